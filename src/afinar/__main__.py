from afinar.cli.main import app

app()
