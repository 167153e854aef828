"""The command line's help, as a user sees it: every command listed with what it does, every flag of our
commands with a help text and its default (for a default of None, what None means)."""

import os
import re
import subprocess
import sys

import pytest

COMMANDS = ("train", "evaluate", "export", "rescore", "disentangle", "figures", "pipeline")
OWN_COMMANDS = ("train", "evaluate", "export", "rescore", "pipeline")  # disentangle and figures parse their own flags


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100"})  # argparse wraps at the terminal's width


def help_text(*args: str) -> str:
    done = run_cli(*args, "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def entries(section: str, indent: int) -> dict[str, str]:
    """A help section's entries, name -> text: an entry starts at `indent` spaces, its text follows on the
    same line after two spaces or on deeper-indented lines."""
    found: dict[str, str] = {}
    name = ""
    for line in section.splitlines():
        if re.match(rf" {{{indent}}}\S", line):
            invocation, _, text = line.strip().partition("  ")
            name = invocation.split(",")[-1].split()[0]  # "-h, --help" -> --help; "--k K" -> --k
            found[name] = text
        elif name:
            found[name] += " " + line
    return {name: " ".join(text.split()) for name, text in found.items()}


def section(text: str, title: str) -> str:
    return text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]


def options(text: str) -> dict[str, str]:
    return entries(section(text, "options"), 2)


def test_main_help_lists_every_command_with_what_it_does():
    listed = entries(section(help_text(), "commands"), 4)
    assert set(listed) == set(COMMANDS)
    for command, text in listed.items():
        assert len(text.split()) >= 4, f"{command}: {text!r}"


def test_the_listed_commands_are_the_parsers_choices():
    done = run_cli("no-such-command")
    assert done.returncode == 2
    choices = re.search(r"choose from (.*)\)", done.stderr)
    assert choices and set(re.findall(r"'([a-z-]+)'", choices.group(1))) == set(COMMANDS)


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_every_flag_has_help_and_its_default(command):
    text = help_text(command)
    usage = " ".join(text.split("\n\n", 1)[0].split())
    flags = options(text)
    assert "--help" in flags and len(flags) > 5
    for flag, help_ in flags.items():
        assert help_ and not help_.startswith("(default"), f"{command} {flag}: no help text"
        optional = re.search(rf"\[{re.escape(flag)}[ \]]", usage)  # usage brackets the flags one may leave out
        if flag == "--help" or not optional:  # -h, and required flags: nothing to default to
            assert "(default:" not in help_, f"{command} {flag}: {help_!r}"
            continue
        assert re.search(r"\(default: [^)]", help_), f"{command} {flag}: no default in {help_!r}"
        if "(default: None" in help_:
            assert re.search(r"\(default: None = \S", help_), f"{command} {flag}: None without its meaning"


def test_config_flags_name_their_key_and_built_in_value():
    flags = options(help_text("train"))
    assert flags["--epochs"] == "number of epochs (default: None = train.epochs from --config, else 10)"
    assert flags["--dataset"].endswith("(default: None = data.dataset from --config, else fashion-mnist)")
    assert flags["--seed"].endswith("(default: None = train.seed from --config, else 0)")


@pytest.mark.parametrize("command,title", [("disentangle", "Disentanglement study"), ("figures", "chapter's figures")])
def test_commands_with_their_own_parsers_show_their_own_help(command, title):
    """--help reaches the command's own parser (training/disentangle.py, training/figures.py), not a stub."""
    text = help_text(command)
    assert title in text and "--out" in options(text)
    assert text.startswith(f"usage: python -m training {command}")  # the program a user types


@pytest.mark.parametrize("command", ["disentangle", "figures"])
def test_forwarded_commands_document_every_flag(command):
    for flag, help_ in options(help_text(command)).items():
        assert flag == "--help" or re.search(r"\S.*\(default: ", help_), f"{command} {flag}: {help_!r}"
