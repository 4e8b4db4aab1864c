"""Shell completion scripts for ``ssemble`` (bash, zsh, fish), written from its parser.

`command_tree()` reads the argparse parser into plain data: each command (a path of
words, ``()`` for ``ssemble`` itself, ``("auth", "login")`` for a nested one), its options,
which of them take a value, the values they allow (``choices``; a ``DIR`` or ``FILE``
metavar completes paths) and the words that may follow (subcommands, a positional's
choices). Each renderer turns that data into a static script: a TAB runs shell code only,
never Python, and a flag added to the parser appears in the next script with no edit here.

Every script works alike: it walks the words before the cursor, descending into
subcommands and skipping the value of each option that takes one, then offers the values
of the option being given, the options of the command reached (the word starts with ``-``),
or the words that may follow it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterable, Iterator

__all__ = ["Command", "Option", "command_tree", "completion_script"]

#: Metavars whose values are paths.
_PATH_METAVARS = {"DIR": "dir", "FILE": "file"}


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a command, as completion needs it."""

    flags: tuple[str, ...]
    summary: str
    takes_value: bool
    #: The values allowed (``choices``); none: any value.
    values: tuple[str, ...] = ()
    #: ``"dir"`` or ``"file"`` when the value is a path; else ``""``.
    paths: str = ""


@dataclasses.dataclass(frozen=True)
class Command:
    """A command (``path``: the words that name it) with what may follow it."""

    path: tuple[str, ...]
    options: tuple[Option, ...]
    #: Subcommands: (name, summary); a positional's choices have an empty summary.
    words: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        """The path as the scripts name it: words joined by a space, ``""`` at the top."""
        return " ".join(self.path)


#: Where a help text's first sentence ends (not at "e.g. x"), and its full stop.
_SENTENCE_END = re.compile(r"(?<=\w)\.\s+(?=[A-Z])")
_FULL_STOP = re.compile(r"(?<=\w)\.$")


def summary(text: str | None) -> str:
    """A help text cut to a short description: its first sentence, 70 characters at most."""
    if not text or text == argparse.SUPPRESS:
        return ""
    first = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    first = _FULL_STOP.sub("", first)
    if len(first) <= 70:
        return first
    return first[:67].rsplit(" ", 1)[0].rstrip(",;:.") + "..."


def _option(action: argparse.Action) -> Option:
    paths = _PATH_METAVARS.get(action.metavar, "") if isinstance(action.metavar, str) else ""
    return Option(
        flags=tuple(action.option_strings),
        summary=summary(action.help),
        takes_value=action.nargs != 0,
        values=tuple(str(choice) for choice in action.choices or ()),
        paths=paths,
    )


def command_tree(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of ``parser``, the top first, each before its subcommands."""

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[Command]:
        options: list[Option] = []
        words: list[tuple[str, str]] = []
        nested: list[tuple[str, argparse.ArgumentParser]] = []
        for action in parser._actions:  # argparse keeps no public list of them
            if action.help == argparse.SUPPRESS:
                continue
            if action.option_strings:
                options.append(_option(action))
            elif isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    words.append((name, summary(sub.description)))
                    nested.append((name, sub))
            elif action.choices:
                words.extend((str(choice), "") for choice in action.choices)
        yield Command(path=path, options=tuple(options), words=tuple(words))
        for name, sub in nested:
            yield from walk(sub, (*path, name))

    return list(walk(parser, ()))


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser``'s program for ``shell`` (bash, zsh or fish)."""
    render = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell]
    return render(parser.prog, command_tree(parser))


# -- quoting --------------------------------------------------------------------------------


def _sh(text: str) -> str:
    """``text`` in single quotes for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fish(text: str) -> str:
    """``text`` in single quotes for fish."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_NAME = re.compile(r"[^A-Za-z0-9_]")


def _function(prog: str) -> str:
    """The prefix of the script's function names: ``_ssemble``."""
    return "_" + _NAME.sub("_", prog)


# -- the tables every script consults -------------------------------------------------------


def _value_options(tree: Iterable[Command]) -> list[str]:
    """``"<path> <flag>"`` of every option that takes a value."""
    return [
        f"{command.key} {flag}"
        for command in tree
        for option in command.options
        if option.takes_value
        for flag in option.flags
    ]


def _descents(tree: list[Command]) -> list[tuple[str, str]]:
    """(``"<path> <word>"``, the path it leads to) of every subcommand."""
    keys = {command.key for command in tree}
    return [
        (f"{command.key} {word}", f"{command.key} {word}".strip())
        for command in tree
        for word, _ in command.words
        if f"{command.key} {word}".strip() in keys
    ]


def _valued(tree: Iterable[Command]) -> Iterator[tuple[list[str], Option]]:
    """(its ``"<path> <flag>"`` keys, the option) of every option whose values complete."""
    for command in tree:
        for option in command.options:
            if option.takes_value and (option.values or option.paths):
                yield [f"{command.key} {flag}" for flag in option.flags], option


# -- bash -----------------------------------------------------------------------------------


def _walk_functions(fn: str, tree: list[Command]) -> list[str]:
    """``<fn>_takes_value`` and ``<fn>_descend``, the same shell code in bash and zsh."""
    lines = [
        f"{fn}_takes_value() {{  # $1 the command path, $2 an option: does it take a value?",
        '    case "$1 $2" in',
        f"        {'|'.join(_sh(key) for key in _value_options(tree))}) return 0 ;;",
        "    esac",
        "    return 1",
        "}",
        "",
        f"{fn}_descend() {{  # $1 the command path, $2 a word: the path it leads to, if any",
        '    case "$1 $2" in',
    ]
    lines += [f"        {_sh(key)}) cmdpath={_sh(to)} ;;" for key, to in _descents(tree)]
    return [*lines, "    esac", "}", ""]


def bash_script(prog: str, tree: list[Command]) -> str:
    """The bash script: ``complete -F`` with a function that sets ``COMPREPLY``."""
    fn = _function(prog)
    lines = [
        f"# bash completion for {prog}; written by: {prog} completion bash",
        f'# use: eval "$({prog} completion bash)" in ~/.bashrc, or save it as',
        f"# ~/.local/share/bash-completion/completions/{prog}",
        "",
    ]
    lines += _walk_functions(fn, tree)
    lines += [
        f"{fn}_values() {{  # $1 the command path, $2 an option, $3 the value typed so far",
        '    case "$1 $2" in',
    ]
    for keys, option in _valued(tree):
        if option.values:
            action = f'{fn}_reply -W {_sh(" ".join(option.values))} -- "$3"'
        else:
            action = f'{fn}_reply -{"d" if option.paths == "dir" else "f"} -- "$3"'
            action = f"compopt -o filenames 2>/dev/null; {action}"
        lines.append(f"        {'|'.join(_sh(key) for key in keys)}) {action} ;;")
    lines += [
        "    esac",
        "}",
        "",
        f"{fn}_words() {{  # $1 the command path, $2 options or words: what may come there",
        '    case "$2 $1" in',
    ]
    for command in tree:
        flags = " ".join(flag for option in command.options for flag in option.flags)
        lines.append(f"        {_sh('options ' + command.key)}) reply={_sh(flags)} ;;")
        if command.words:
            words = " ".join(word for word, _ in command.words)
            lines.append(f"        {_sh('words ' + command.key)}) reply={_sh(words)} ;;")
    lines += [
        "        *) reply='' ;;",
        "    esac",
        "}",
        "",
        f"{fn}_reply() {{  # compgen's words (one a line: names may hold spaces) into COMPREPLY",
        '    mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen "$@")',
        "}",
        "",
        f"{fn}() {{",
        "    local cur=${COMP_WORDS[COMP_CWORD]} cmdpath='' option='' prefix='' reply word",
        "    local -i i skip=0",
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        "        word=${COMP_WORDS[i]}",
        "        if [[ $word == '=' ]]; then continue  # --option=value, split at the '='",
        "        elif (( skip )); then skip=0",
        f'        elif [[ $word == -* ]]; then {fn}_takes_value "$cmdpath" "$word" &&'
        " skip=1 option=$word",
        f'        else {fn}_descend "$cmdpath" "$word"',
        "        fi",
        "    done",
        "    COMPREPLY=()",
        "    [[ $cur == '=' ]] && cur=''",
        "    if (( skip )); then",
        f'        {fn}_values "$cmdpath" "$option" "$cur"',
        "    elif [[ $cur == -*=* ]]; then  # --option=value in one word",
        "        option=${cur%%=*} prefix=${cur%%=*}=",
        f'        {fn}_takes_value "$cmdpath" "$option" &&'
        f' {fn}_values "$cmdpath" "$option" "${{cur#*=}}"',
        '        COMPREPLY=("${COMPREPLY[@]/#/$prefix}")',
        "    elif [[ $cur == -* ]]; then",
        f'        {fn}_words "$cmdpath" options',
        f'        {fn}_reply -W "$reply" -- "$cur"',
        "    else",
        f'        {fn}_words "$cmdpath" words',
        f'        {fn}_reply -W "$reply" -- "$cur"',
        "    fi",
        "}",
        "",
        f"complete -F {fn} {prog}",
    ]
    return "\n".join(lines) + "\n"


# -- zsh ------------------------------------------------------------------------------------


def _described(items: Iterable[tuple[str, str]]) -> str:
    """A zsh array of ``word:description`` items for ``_describe``."""
    return " ".join(
        _sh(word.replace(":", "\\:") + (f":{text}" if text else "")) for word, text in items
    )


def zsh_script(prog: str, tree: list[Command]) -> str:
    """The zsh script: a completion function for ``compdef`` or ``$fpath``."""
    fn = _function(prog)
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}; written by: {prog} completion zsh",
        f'# use: eval "$({prog} completion zsh)" in ~/.zshrc after compinit, or save it as',
        f"# {fn} in a folder of $fpath",
        "",
    ]
    lines += _walk_functions(fn, tree)
    lines += [
        f"{fn}_values() {{  # $1 the command path, $2 an option: offer its values",
        '    case "$1 $2" in',
    ]
    for keys, option in _valued(tree):
        if option.values:
            action = f"compadd -- {' '.join(_sh(value) for value in option.values)}"
        else:
            action = "_files -/" if option.paths == "dir" else "_files"
        lines.append(f"        {'|'.join(_sh(key) for key in keys)}) {action} ;;")
    lines += [
        "    esac",
        "}",
        "",
        f"{fn}_words() {{  # $1 the command path, $2 options or words: offer what may come",
        "    local -a items",
        '    case "$2 $1" in',
    ]
    for command in tree:
        flags = ((flag, option.summary) for option in command.options for flag in option.flags)
        lines.append(f"        {_sh('options ' + command.key)}) items=({_described(flags)}) ;;")
        if command.words:
            words = _described(command.words)
            lines.append(f"        {_sh('words ' + command.key)}) items=({words}) ;;")
    lines += [
        "    esac",
        '    (( ${#items} )) && _describe -t "$2" "$2" items',
        "}",
        "",
        f"{fn}_complete() {{",
        "    local cur=${words[CURRENT]} cmdpath='' option='' word",
        "    local -i i skip=0",
        "    for (( i = 2; i < CURRENT; i++ )); do",
        "        word=${words[i]}",
        "        if (( skip )); then skip=0",
        f'        elif [[ $word == -* ]]; then {fn}_takes_value "$cmdpath" "$word" &&'
        " skip=1 option=$word",
        f'        else {fn}_descend "$cmdpath" "$word"',
        "        fi",
        "    done",
        "    if (( skip )); then",
        f'        {fn}_values "$cmdpath" "$option"',
        "    elif [[ $cur == -*=* ]]; then  # --option=value in one word",
        "        option=${cur%%=*}",
        "        compset -P '*='",
        f'        {fn}_takes_value "$cmdpath" "$option" && {fn}_values "$cmdpath" "$option"',
        "    elif [[ $cur == -* ]]; then",
        f'        {fn}_words "$cmdpath" options',
        "    else",
        f'        {fn}_words "$cmdpath" words',
        "    fi",
        "}",
        "",
        f"if [[ ${{funcstack[1]-}} == {fn} ]]; then  # autoloaded from $fpath",
        f'    {fn}_complete "$@"',
        "else",
        f"    compdef {fn}_complete {prog}",
        "fi",
    ]
    return "\n".join(lines) + "\n"


# -- fish -----------------------------------------------------------------------------------


def fish_script(prog: str, tree: list[Command]) -> str:
    """The fish script: ``complete`` rules conditioned on the command path."""
    fn = _function(prog).lstrip("_")
    lines = [
        f"# fish completion for {prog}; written by: {prog} completion fish",
        f"# use: {prog} completion fish > ~/.config/fish/completions/{prog}.fish",
        "",
        f"function __{fn}_takes_value --description 'does option $argv[2] take a value'",
        '    switch "$argv[1] $argv[2]"',
        f"        case {' '.join(_fish(key) for key in _value_options(tree))}",
        "            return 0",
        "    end",
        "    return 1",
        "end",
        "",
        f"function __{fn}_descend --description 'the command path word $argv[2] leads to'",
        '    switch "$argv[1] $argv[2]"',
    ]
    for key, to in _descents(tree):
        lines += [f"        case {_fish(key)}", f"            echo {_fish(to)}"]
    lines += [
        "        case '*'",
        "            return 1",
        "    end",
        "end",
        "",
        f"function __{fn}_at --description 'is the command path $argv[1]'",
        "    set -l cmdpath ''",
        "    set -l skip 0",
        "    for word in (commandline -opc)[2..-1]",
        "        if test $skip = 1",
        "            set skip 0",
        "        else if string match -q -- '-*' $word",
        f'            __{fn}_takes_value "$cmdpath" $word; and set skip 1',
        f'        else if set -l next (__{fn}_descend "$cmdpath" $word)',
        "            set cmdpath $next",
        "        end",
        "    end",
        '    test "$cmdpath" = "$argv[1]"',
        "end",
        "",
    ]
    for command in tree:
        at = f"-n {_fish(f'__{fn}_at {_fish(command.key)}')}"
        rule = f"complete -c {prog} {at}"
        lines.append(f"{rule} -f")  # no file names where none are asked for
        for word, text in command.words:
            lines.append(f"{rule} -a {_fish(word)}" + (f" -d {_fish(text)}" if text else ""))
        for option in command.options:
            parts = [rule]
            for flag in option.flags:
                long = flag.startswith("--")
                parts.append(f"{'-l' if long else '-s'} {_fish(flag.lstrip('-'))}")
            if option.values:
                parts.append(f"-x -a {_fish(' '.join(option.values))}")
            elif option.paths == "dir":
                parts.append("-x -a '(__fish_complete_directories)'")
            elif option.paths == "file":
                parts.append("-r -F")
            elif option.takes_value:
                parts.append("-x")
            if option.summary:
                parts.append(f"-d {_fish(option.summary)}")
            lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"
