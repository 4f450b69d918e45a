"""Options and error handling shared by the `bench` commands.

Exit codes: 0 success, 1 a user or operational error (one line, no traceback unless
``--debug``), 2 a usage error (bad flag or value), 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import console as ui
from bench.compare import ThresholdError, parse_threshold
from bench.preflight import os_error_text
from bench.ranges import DurationError, parse_duration
from bench.runner import RunInterrupted
from migrator.errors import MigratorError
from migrator.settings import SETTING_BY_NAME, SETTINGS, SWEPT, RunSettings, Setting

Command = Callable[..., Any]


class _State:
    """Set by the root command's ``--debug`` before any command runs."""

    debug = False


state = _State()


@contextmanager
def user_errors(*also: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can cause into one line and an exit code.

    ``also`` adds error classes of packages that cannot derive from MigratorError
    (``datasets`` depends on no other package of ours). An OSError (a folder that cannot
    be written, a full disk) is the environment's doing too: one line naming the path.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        if state.debug:
            raise
        kept = (f"; what was measured is in {exc.outcome.result_file} (status interrupted)"
                if isinstance(exc, RunInterrupted) else "")
        ui.error("interrupted: the batch in progress was rolled back; "
                 f"continue with --resume{kept}")
        raise typer.Exit(130) from None
    except (MigratorError, *also) as exc:  # type: ignore[misc]  # (mypy: star in except)
        if state.debug:
            raise
        ui.error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        if state.debug:
            raise
        ui.error(os_error_text(exc))
        raise typer.Exit(1) from None


def positive(name: str) -> Any:
    def check(value: int | None) -> int | None:
        if value is not None and value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
        return value
    return check


# Options shared by the commands that write a run folder or print JSON.
RunFolderOption = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Run folder (default: runs/<timestamp>/).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


# ---- run settings as options ----------------------------------------------------------------
# Every option that sets a run setting is built here from its declaration in
# migrator.settings: its flag, help, default, type and checks are written there only.

#: How a numeric sweep option's values are written, by the meaning of a bare ``A..B``.
GRAMMAR_HELP = {
    "125": "range grammar: 50..2000 (1-2-5 series), 100..1000:100, 1..64:x2, 50,100,500",
    "linear": "1..4 is 1,2,3,4; also 2..16:2, 1..64:x2, 1,2,4",
}
#: The settings that say where a run's tables go, taken by every command that migrates.
TABLE_SETTINGS = ("schema", "table_prefix", "replace_existing_tables")


def _markup(text: str) -> str:
    # Help is rich markup: a literal "[default: …]" would be taken for a style tag.
    return text.replace("[", "\\[")


def _checker(s: Setting, flag: str, *, choices: bool = True) -> Any:
    """The option's callback: the setting's choices and check, a usage error (exit 2)."""
    if not (s.check or (choices and s.choices)):
        return None

    def check(value: Any) -> Any:
        if choices and s.choices and value is not None and value not in s.choices:
            raise typer.BadParameter(f"must be one of {', '.join(s.choices)}, got {value!r}",
                                     param_hint=flag)
        if s.check is not None:
            try:
                s.check(value)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=flag) from None
        return value
    return check


def setting_option(name: str, help: str | None = None) -> Any:
    """The ``typer.Option`` of a setting as ``bench run`` takes it (``help``: the command's
    own words for it), for ``Annotated[type, setting_option(name)]``. A setting with an
    alias flag is checked once both flags are read (:func:`_run_value`)."""
    s = SETTING_BY_NAME[name]
    decls = (s.flag, s.short) if s.short else (s.flag,)
    text = help or s.help
    if s.alias is None:
        return typer.Option(*decls, help=_markup(text), callback=_checker(s, s.flag),
                            min=s.minimum, metavar=s.metavar, envvar=s.envvar)
    # (its option has no default of its own: the alias may give the value)
    return typer.Option(*decls, help=_markup(f"{text} [default: {s.default}]"),
                        metavar=s.metavar, envvar=s.envvar)


#: ``bench mapping`` takes the DTD catalog as ``bench run`` does.
DtdDirOption = Annotated[Path | None, setting_option("dtd_dir")]


def _parameter(name: str, annotation: Any, default: Any, info: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def _off_name(s: Setting) -> str:
    assert s.off_flag is not None
    return s.off_flag.lstrip("-").replace("-", "_")


def _run_parameters(s: Setting, help: str | None) -> list[inspect.Parameter]:
    if s.alias is not None:  # either flag may be given: None until resolved
        return [_parameter(s.name, str | None, None, setting_option(s.name, help)),
                _parameter(s.alias.name, str | None, None,
                           typer.Option(s.alias.flag, help=_markup(s.alias.help)))]
    params = [_parameter(s.name, s.cli_type or s.annotation, s.default,
                         setting_option(s.name, help))]
    if s.off_flag:
        params.append(_parameter(_off_name(s), bool, False,
                                 typer.Option(s.off_flag, help=_markup(s.off_help))))
    return params


def _run_value(s: Setting, given: dict[str, Any]) -> Any:
    value = given.pop(s.name)
    if s.alias is not None:
        try:
            return s.alias.resolve(value, given.pop(s.alias.name))
        except ValueError as exc:  # (its message names both flags)
            raise typer.BadParameter(str(exc)) from None
    if s.off_flag and given.pop(_off_name(s)):
        return None
    return str(value) if isinstance(value, os.PathLike) else value  # (a Path for a str)


def _expand(into: str, params: list[inspect.Parameter],
            collect: Callable[[dict[str, Any]], Any]) -> Callable[[Command], Command]:
    """Put ``params`` where the command's parameter ``into`` is, and call the command with
    ``into=collect(their values)``: Typer reads the options from the built signature."""
    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        names = [p.name for p in own]
        at = names.index(into)
        clash = {p.name for p in params} & set(names)
        assert not clash, f"{command.__name__}: options named twice: {clash}"

        @functools.wraps(command)
        def with_options(**kwargs: Any) -> Any:
            given = {p.name: kwargs.pop(p.name) for p in params}
            return command(**kwargs, **{into: collect(given)})

        laid_out = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                    for p in [*own[:at], *params, *own[at + 1:]]]
        with_options.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=laid_out)
        with_options.__annotations__ = {p.name: p.annotation for p in laid_out}
        return with_options
    return decorate


def settings_options(*names: str, into: str = "settings",
                     helps: Mapping[str, str] | None = None) -> Callable[[Command], Command]:
    """The options of the named run settings (none named: all of them, as ``bench run``
    takes them), in place of the command's parameter ``into``, which receives one
    :class:`RunSettings` (the settings not named at their defaults). ``helps``: the
    command's own words for an option."""
    chosen = [SETTING_BY_NAME[n] for n in names] if names else list(SETTINGS)
    params = [p for s in chosen for p in _run_parameters(s, (helps or {}).get(s.name))]

    def collect(given: dict[str, Any]) -> RunSettings:
        return RunSettings(**{s.name: _run_value(s, given) for s in chosen})
    return _expand(into, params, collect)


def sweep_options(into: str = "dimensions") -> Callable[[Command], Command]:
    """Every sweep dimension as its sweep option (``--batch-sizes 50..2000``,
    ``--pooling on,off``), in place of ``into``, which receives each one's text by setting
    name (None: not given)."""
    params = []
    for s in SWEPT:
        assert s.sweep is not None
        decls = (s.sweep.option, s.sweep.short) if s.sweep.short else (s.sweep.option,)
        text = s.sweep.help.format(grammar=GRAMMAR_HELP.get(s.sweep.series, ""),
                                   choices=",".join(s.sweep_choices or ()),
                                   default=s.sweep.default)
        params.append(_parameter(s.name, str | None, None,
                                 typer.Option(*decls, help=_markup(text))))
        if s.alias is not None:
            params.append(_parameter(s.alias.name, str | None, None, typer.Option(
                s.alias.flag, help=_markup(s.alias.sweep_help))))
    return _expand(into, params, dict)


def configuration_options(into: str = "configuration",
                          always: tuple[str, ...] = ("batch_size",)
                          ) -> Callable[[Command], Command]:
    """Every sweep dimension as ``bench run`` takes it, one value each, in place of
    ``into``, which receives the values by setting name (and an alias flag's by its name;
    None: not given; the settings in ``always`` have their default). Choices are checked
    where they are parsed (:func:`bench.cli.plans.one_configuration`), which names the ones
    allowed."""
    params = []
    for s in SWEPT:
        decls = (s.flag, s.short) if s.short else (s.flag,)
        kept = s.name in always
        info = typer.Option(*decls, help=_markup(s.help), min=s.minimum,
                            callback=_checker(s, s.flag, choices=False))
        annotation = str | None if s.choices else s.annotation if kept else s.annotation | None
        params.append(_parameter(s.name, annotation, s.default if kept else None, info))
        if s.alias is not None:
            params.append(_parameter(s.alias.name, str | None, None, typer.Option(
                s.alias.flag, help=_markup(s.alias.help))))
    return _expand(into, params, dict)


def warn(message: str) -> None:
    ui.console(stderr=True).print(f"warning: {message}", markup=False)


def usage(message: str) -> typer.BadParameter:
    """A usage error (exit 2); the message already names the option."""
    return typer.BadParameter(message)


def abspath(path: Path | None) -> str | None:
    return os.path.abspath(path) if path is not None else None


def echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=1, ensure_ascii=False))


def duration_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, name=option)
    except DurationError as exc:
        raise usage(str(exc)) from None


def percent_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = parse_threshold(text)
    except ThresholdError:
        raise usage(f"{option}: {text!r} is not a percentage; expected e.g. 2% or 2") from None
    if value >= 0.5:
        raise usage(f"{option}: {text} is not a noise band (use a few percent, e.g. 2%)")
    return value


def check_alpha(value: float) -> float:
    if not 0.0 < value <= 0.5:
        raise typer.BadParameter(f"must be in (0, 0.5], e.g. 0.05; got {value:g}",
                                 param_hint="--alpha")
    return value
