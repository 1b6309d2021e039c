from controlplane.cli import app

app()
