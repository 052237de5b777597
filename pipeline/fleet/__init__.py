"""Fleet benchmarking on Ray: one build-and-benchmark matrix run on every device of a farm.

Devices join a Ray cluster advertising what they are (`device:<kind>`), what they can build
(`target:<name>`) and one `bench-slot`; each matrix cell is a Ray task that asks for all three, so it
runs only where it can, and never beside another cell on the same device.
"""
