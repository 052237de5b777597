"""Pipeline stages. Each module declares its config section (a pydantic model), a `run(config, ctx)`
that maps input artifacts to output artifacts in `ctx.out_dir`, and a typer `command` for the CLI."""
