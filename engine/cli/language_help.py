"""The help of the commands `main` runs without building the typer app: `validate`,
`simulate` and `schema` read definition files only, and start in a fraction of a second.
Their click commands (`language`) and their entries in `turnout --help` (`definitions`) both
read it here.
"""

from __future__ import annotations

LANGUAGE_COMMANDS = {
    "validate": "Check definitions; print problems as file:line:col: message.",
    "simulate": "Dry-run a definition without a database and print the path taken.",
    "schema": "Print the JSON Schema of the definition language (for editors).",
}
