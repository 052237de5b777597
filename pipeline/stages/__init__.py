"""Pipeline stages. Each module declares its config section (a pydantic model) and its work, a
`run(config, ctx)` that maps input artifacts to output artifacts in `ctx.out_dir` (the Stage protocol of
`pipeline/stages/stage.py`); the commands that call them live in `pipeline/cli/`."""
