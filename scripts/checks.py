"""The pass/fail harness that check_export.py and check_peft.py share.

A check is a named callable that raises CheckError (through `require`) when what it reads is wrong;
`run_checks` runs every check, prints each name and its verdict, and turns the tally into an exit
status, so one failed file or comparison does not hide the others. Both scripts are also one
command line of subcommands (`subcommands` and `dispatch`).
"""

import argparse


class CheckError(Exception):
    pass


def require(ok, message):
    if not ok:
        raise CheckError(message)


def run_checks(checks):
    """Runs `(name, check)` pairs in order; returns 1 if any failed, else 0."""
    failed = 0
    for name, run in checks:
        print(f"{name}")
        try:
            run()
            print("  ok")
        except CheckError as e:
            failed += 1
            print(f"  FAILED: {e}")
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def subcommands(doc):
    """A parser whose help is the script's docstring `doc`, and its required subcommand group."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="command", required=True)


def dispatch(parser, commands):
    """Parses the command line and runs the function `commands` maps its subcommand to; returns its exit status."""
    args = parser.parse_args()
    return commands[args.command](args)
