from tailtune.cli import app

app(prog_name="tailtune")
