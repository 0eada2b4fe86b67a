"""derms-bridge: one command for running, checking and operating the hub."""

from __future__ import annotations

import typer

from derms_bridge.cli import archive, configuration, instances, lookups, retention, serving

app = typer.Typer(
    help="The integration hub between Oracle Utilities CPMCS and Edge DERMS.",
    no_args_is_help=True,
    add_completion=False,
)
# In this order `derms-bridge --help` lists them.
app.command("check-config")(configuration.check_config)
app.command("migrate")(serving.migrate)
app.command("serve")(serving.serve)
app.command("worker")(serving.worker)
app.command("run")(serving.run_now)
app.command("sandbox")(serving.sandbox)
app.command("hash-password")(configuration.hash_password_command)
app.command("hash-token")(configuration.hash_token_command)
app.command("resubmit")(instances.resubmit)
app.command("purge")(retention.purge)
app.add_typer(archive.archive_app, name="archive")
app.add_typer(instances.instances_app, name="instances")
app.add_typer(lookups.lookups_app, name="lookups")


def main() -> None:
    app()
