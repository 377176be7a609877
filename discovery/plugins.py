"""Plugins: lifecycle hook specifications (pluggy), and how plugins are found and checked.

Two kinds of plugin extend a campaign, both found through entry points of installed packages:

- **Oracles** (group ``discovery.oracles``): a class with ``from_options(options, context)``; the
  campaign file's ``oracle.name`` picks one (see :mod:`discovery.oracles.registry`). The built-in
  ``replay``, ``model`` and ``lab`` oracles are registered exactly so, in this package's
  ``pyproject.toml``.
- **Hook plugins** (group ``discovery.hooks``): a module (or an object; a class is instantiated
  without arguments) whose functions marked with :data:`hookimpl` act on the lifecycle steps below.
  A hook plugin runs in a campaign only when the campaign file lists its entry-point name under
  ``plugins:``, so a campaign file runs no code but installed entry points it names.

An oracle object that itself has methods marked with :data:`hookimpl` is registered as a hook
plugin of every campaign that uses it, so an oracle can act on lifecycle steps too.

Every hook receives keyword arguments; an implementation declares only the ones it needs, by name
(``def discovery_result_received(result): ...`` is valid). Each plugin is checked when it is loaded:
a hook name that is not specified here, an argument the specification does not have, a function
named ``discovery_*`` without the :data:`hookimpl` marker, or a pluggy option this module does not
support (wrappers, ``tryfirst``/``trylast``) is a :class:`PluginError` naming the plugin, its package,
the hook and the argument, before the campaign does anything.

**Order.** Implementations run one after the other: the oracle's own first (it knows its raw answers
best), then the hook plugins in the order of the campaign file's ``plugins:`` list. The two hooks
that may change data, :func:`discovery_result_received` and :func:`discovery_before_training`, are
pipelines: each implementation receives what the previous one returned. A plugin that raises stops
the campaign with a :class:`PluginError` naming it; nothing of that step is recorded, so running
the campaign again once the plugin is fixed repeats the step.
"""

from __future__ import annotations

__all__ = [
    "HOOKS_GROUP",
    "HOOK_NAMES",
    "PROJECT",
    "CampaignHooks",
    "PluginError",
    "PluginInfo",
    "discovery_after_training",
    "discovery_batch_proposed",
    "discovery_before_training",
    "discovery_result_received",
    "hook_entry_points",
    "hook_plugin_names",
    "hookimpl",
    "hookspec",
    "installed_plugins",
]

import difflib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from discovery.errors import DiscoveryError

if TYPE_CHECKING:
    import pandas as pd

    from discovery.oracles.base import Result
    from discovery.surrogate import DeepEnsemble

#: The pluggy project name: markers are ``discovery_spec`` / ``discovery_impl`` attributes.
PROJECT = "discovery"
#: Entry-point group of hook plugins.
HOOKS_GROUP = "discovery.hooks"
#: Marks a hook specification (this module only).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a hook implementation in a plugin: ``from discovery.plugins import hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)

_PREFIX = "discovery_"


class PluginError(DiscoveryError):
    """A plugin that cannot be loaded, does not match the hook specifications, or failed in a hook."""


# ============================================================================ specifications
# The bodies are never run: pluggy reads the names and arguments.


@hookspec
def discovery_batch_proposed(
    campaign: str, workdir: Path, round: int, proposals: pd.DataFrame
) -> None:
    """A round's batch was chosen and recorded in the ledger, before it goes to the oracle.

    Observe only (the return value is ignored): notify a lab, write a work order, log.

    Args:
        campaign: the campaign name.
        workdir: the campaign's work directory (a plugin may keep files under
            ``workdir / "plugins" / <its name>``).
        round: the round number (0 is the initial design when there is one).
        proposals: one row per proposed candidate, in rank order (a copy): ``candidate_id``,
            ``round``, ``rank``, ``working_ion``, ``formula_charge``, ``formula_discharge``,
            ``strategy``, ``acquisition_value`` and the surrogate's predictions as
            ``predicted_<outcome>_mean`` / ``predicted_<outcome>_std`` in the outcome's units
            (``predicted_average_voltage_mean`` in V); continuous spaces add ``x`` (the composition
            vector). Prediction columns are absent for a random design.
    """


@hookspec
def discovery_result_received(
    campaign: str, workdir: Path, result: Result, candidate: Mapping[str, str]
) -> Result | str | None:
    """An oracle answered a submitted candidate with status ``"ok"``; validate, convert, or reject.

    Called before the campaign's own checks (finite numbers, the first learned target present,
    capacity in mAh/g and energy in Wh/kg filled in from the formulas), which a replacement also
    passes through. Answers of status ``failed`` or ``rejected`` are not shown to this hook.

    Args:
        campaign: the campaign name.
        workdir: the campaign's work directory.
        result: the answer (:class:`discovery.oracles.Result`); ``values`` maps outcome names to
            numbers, in the campaign's units once every implementation has run (``average_voltage``
            in V vs the ion metal, ``capacity_grav`` in mAh/g, ``energy_grav`` in Wh/kg,
            ``max_delta_volume`` as a fraction).
        candidate: ``candidate_id``, ``working_ion``, ``formula_charge``, ``formula_discharge``.

    Returns:
        None to leave the result as it is; a :class:`~discovery.oracles.Result` with the same
        ``candidate_id`` and ``job_id`` to replace it (e.g. values converted from mV to V;
        ``dataclasses.replace(result, values=...)``), which the next implementation receives; or a
        string, the reason to reject it: the answer is then recorded with status ``rejected`` and
        that reason (prefixed with the plugin's name), kept out of training, and no later
        implementation runs. A rejected answer closes its job as failed unless the oracle has
        ``accepts_corrections``.
    """


@hookspec
def discovery_before_training(
    campaign: str, workdir: Path, round: int, frame: pd.DataFrame
) -> pd.DataFrame | None:
    """The round's surrogate is about to be trained on ``frame``; filter or adjust the rows.

    Not called when a resumed round loads the model it already trained.

    Args:
        campaign: the campaign name.
        workdir: the campaign's work directory.
        round: the round whose model is trained.
        frame: the training rows (a copy): ``battery_id`` (the candidate id for oracle answers),
            ``working_ion``, ``formula_charge``, ``formula_discharge`` and the learned targets
            (``average_voltage`` in V, ...; NaN where unmeasured), plus any columns the campaign
            adds (e.g. ``fidelity``).

    Returns:
        None to keep the frame, or a new frame with at least the same columns (rows may be dropped
        or values changed), which the next implementation receives. Changes made in place to a
        frame that is not returned are ignored. Fewer than 10 rows left stops the campaign.
    """


@hookspec
def discovery_after_training(
    campaign: str,
    workdir: Path,
    round: int,
    model: DeepEnsemble,
    frame: pd.DataFrame,
    model_dir: Path,
) -> None:
    """The round's surrogate was trained and saved. Observe only (the return value is ignored).

    Args:
        campaign: the campaign name.
        workdir: the campaign's work directory.
        round: the round whose model was trained.
        model: the trained :class:`discovery.surrogate.DeepEnsemble` (do not modify it).
        frame: the rows it was trained on (a copy, after :func:`discovery_before_training`).
        model_dir: the directory the model was saved to (``workdir/models/round-NNN``).
    """


def _spec_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(sys.modules[__name__])
    return pm


#: The hook names, in lifecycle order.
HOOK_NAMES: tuple[str, ...] = (
    "discovery_batch_proposed",
    "discovery_result_received",
    "discovery_before_training",
    "discovery_after_training",
)
#: Each hook's argument names, as pluggy reads them from the specifications.
_SPEC_ARGS: dict[str, tuple[str, ...]] = {
    caller.name: tuple(caller.spec.argnames)
    for caller in (getattr(_spec_manager().hook, name) for name in HOOK_NAMES)
}


# ============================================================================ finding plugins
def hook_entry_points() -> dict[str, EntryPoint]:
    """Installed hook plugins (group ``discovery.hooks``) by entry-point name."""
    return {ep.name: ep for ep in entry_points(group=HOOKS_GROUP)}


def hook_plugin_names() -> list[str]:
    """Names of the installed hook plugins, sorted."""
    return sorted(hook_entry_points())


def _package(ep: EntryPoint) -> tuple[str, str]:
    """The distribution (package name, version) that installed ``ep``."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown package", ""
    return str(dist.metadata["Name"] or dist.name), str(dist.version)


def _describe(kind: str, ep: EntryPoint) -> str:
    package, version = _package(ep)
    return f"{kind} {ep.name!r} ({ep.value}, package {package} {version})".replace(" )", ")")


def _load(ep: EntryPoint, label: str, *, instantiate: bool) -> Any:
    try:
        obj = ep.load()
    except Exception as exc:
        raise PluginError(f"{label}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if instantiate and inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise PluginError(
                f"{label}: the class could not be created without arguments: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return obj


def _hook_problems(plugin: object) -> tuple[list[str], list[str]]:
    """The hooks ``plugin`` implements and what is wrong with them (empty when it is sound).

    pluggy parses the markers: the plugin is registered in a scratch manager without
    specifications (which accepts anything), and each implementation found is compared with
    :data:`_SPEC_ARGS`.
    """
    scratch = pluggy.PluginManager(PROJECT)
    try:
        scratch.register(plugin, name="plugin")
    except Exception as exc:  # pluggy refuses the object itself (e.g. a bad marker)
        return [], [f"{type(exc).__name__}: {exc}"]
    hooks: list[str] = []
    problems: list[str] = []
    marked: set[str] = set()
    for caller in scratch.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            name = caller.name
            marked.add(getattr(impl.function, "__name__", name))
            marked.add(name)
            spec = _SPEC_ARGS.get(name)
            if spec is None:
                problems.append(
                    f"hook {name!r} is not a discovery hook{_did_you_mean(name, HOOK_NAMES)}; "
                    f"the hooks are {', '.join(HOOK_NAMES)}"
                )
                continue
            hooks.append(name)
            signature = f"{name}({', '.join(spec)})"
            problems += [
                f"{name}: argument {arg!r} is not in the specification {signature}"
                f"{_did_you_mean(arg, spec)}"
                for arg in impl.argnames
                if arg not in spec
            ]
            options = [
                option
                for option, on in (
                    ("wrapper", impl.wrapper),
                    ("hookwrapper", impl.hookwrapper),
                    ("tryfirst", impl.tryfirst),
                    ("trylast", impl.trylast),
                )
                if on
            ]
            if options:
                problems.append(
                    f"{name}: hookimpl option(s) {', '.join(options)} are not supported "
                    "(implementations run in the campaign file's plugins order)"
                )
    for attr in dir(plugin):
        if attr.startswith(_PREFIX) and attr not in marked:
            value = inspect.getattr_static(plugin, attr, None)
            if callable(value) or isinstance(value, staticmethod | classmethod):
                problems.append(
                    f"{attr} is not marked as a hook implementation (decorate it with "
                    "@hookimpl from discovery.plugins; names starting with 'discovery_' are "
                    "reserved for hooks)"
                )
    return sorted(set(hooks), key=HOOK_NAMES.index), problems


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as ``discover plugins`` lists it.

    Attributes:
        kind: ``"oracle"`` (group ``discovery.oracles``) or ``"hooks"`` (group ``discovery.hooks``).
        name: the entry-point name (what a campaign file writes).
        package: the distribution that installed it; ``version``: its version.
        target: the entry point's object reference, ``module:attribute``.
        hooks: the hooks it implements, in lifecycle order.
        error: why it cannot be used (an import failure, a hook that does not match the
            specifications), or None.
    """

    kind: Literal["oracle", "hooks"]
    name: str
    package: str
    version: str
    target: str
    hooks: tuple[str, ...]
    error: str | None = None


def installed_plugins() -> list[PluginInfo]:
    """Every installed oracle and hook plugin, loaded and checked (errors are reported, not raised).

    Loading imports each plugin's module, so this runs plugin code (as ``discover run`` would).
    """
    from discovery.oracles.registry import oracle_entry_points

    out: list[PluginInfo] = []
    groups: list[tuple[Literal["oracle", "hooks"], dict[str, EntryPoint]]] = [
        ("oracle", oracle_entry_points()),
        ("hooks", hook_entry_points()),
    ]
    for kind, points in groups:
        for name in sorted(points):
            ep = points[name]
            package, version = _package(ep)
            hooks: list[str] = []
            error = None
            label = _describe("plugin" if kind == "hooks" else "oracle", ep)
            try:
                obj = _load(ep, label, instantiate=kind == "hooks")
                hooks, problems = _hook_problems(obj)
                if problems:
                    error = f"{label}: " + "; ".join(problems)
            except PluginError as exc:
                error = str(exc)
            out.append(PluginInfo(kind, name, package, version, ep.value, tuple(hooks), error))
    return out


# ============================================================================ one campaign's hooks
class CampaignHooks:
    """The hook plugins of one campaign run, called in order (see the module docstring).

    Create it with :meth:`load` (the campaign file's ``plugins:``), then :meth:`add_oracle`.
    ``log(kind, **detail)`` (the ledger's :meth:`~discovery.campaign.ledger.Ledger.log`) records
    which plugins were loaded and every replacement or filtering a plugin made.
    """

    def __init__(
        self, campaign: str, workdir: Path, log: Callable[..., None] | None = None
    ) -> None:
        self.campaign = campaign
        self.workdir = Path(workdir)
        self._log = log
        self._pm = _spec_manager()
        self._order: list[str] = []  # registered names, in call order
        self._short: dict[str, str] = {}  # name -> "plugin 'x'" / "oracle 'y'" for messages

    @classmethod
    def load(
        cls,
        names: Sequence[str],
        *,
        campaign: str,
        workdir: Path,
        log: Callable[..., None] | None = None,
    ) -> CampaignHooks:
        """Load and check the hook plugins ``names`` (entry points of ``discovery.hooks``).

        Raises:
            PluginError: an unknown name (``plugins[i]``, with the installed ones listed), a plugin
                that cannot be imported, or one whose hooks do not match the specifications.
        """
        hooks = cls(campaign, workdir, log)
        points = hook_entry_points()
        for i, name in enumerate(names):
            if name not in points:
                known = ", ".join(sorted(points)) or "none"
                raise PluginError(
                    f"plugins[{i}]: unknown plugin {name!r}{_did_you_mean(name, sorted(points))}; "
                    f"installed hook plugins: {known}"
                )
            ep = points[name]
            label = _describe("plugin", ep)
            hooks._add(_load(ep, label, instantiate=True), name, label, f"plugin {name!r}")
            package, version = _package(ep)
            hooks._record("plugin_loaded", plugin=name, package=package, version=version)
        return hooks

    def add_oracle(self, oracle: object, entry_point: str | None = None) -> None:
        """Register ``oracle`` when it has methods marked with :data:`hookimpl` (it runs first).

        ``entry_point``: its name in ``discovery.oracles`` (for messages naming the package).
        """
        from discovery.oracles.registry import oracle_entry_points

        hooks, problems = _hook_problems(oracle)
        if not hooks and not problems:
            return
        points = oracle_entry_points()
        name = str(getattr(oracle, "name", type(oracle).__name__))
        if entry_point is not None and entry_point in points:
            label = _describe("oracle", points[entry_point])
        else:
            label = f"oracle {name!r} ({type(oracle).__module__}.{type(oracle).__qualname__})"
        self._add(oracle, f"oracle:{name}", label, f"oracle {name!r}", first=True)
        self._record("plugin_loaded", plugin=f"oracle:{name}", hooks=hooks)

    def _add(self, plugin: object, name: str, label: str, short: str, first: bool = False) -> None:
        _, problems = _hook_problems(plugin)
        if problems:
            raise PluginError(f"{label}: " + "; ".join(problems))
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"{label}: {exc}") from exc
        self._order.insert(0 if first else len(self._order), name)
        self._short[name] = short

    @property
    def names(self) -> list[str]:
        """Registered plugin names in call order (the oracle's as ``oracle:<name>``)."""
        return list(self._order)

    # ------------------------------------------------------------------ calling
    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        by_name = {impl.plugin_name: impl for impl in getattr(self._pm.hook, hook).get_hookimpls()}
        return [by_name[n] for n in self._order if n in by_name]

    def _call(self, impl: pluggy.HookImpl, hook: str, **kwargs: Any) -> Any:
        args = {"campaign": self.campaign, "workdir": self.workdir, **kwargs}
        try:
            return impl.function(*[args[a] for a in impl.argnames])
        except Exception as exc:
            raise PluginError(
                f"{self._short[impl.plugin_name]} failed in {hook}: {type(exc).__name__}: {exc}"
            ) from exc

    def _record(self, kind: str, **detail: Any) -> None:
        if self._log is not None:
            self._log(kind, **detail)

    def batch_proposed(self, round_: int, proposals: pd.DataFrame) -> None:
        """Call :func:`discovery_batch_proposed` with the round's recorded proposals (the ledger's
        rows; a ``predicted`` column of mappings is spread into ``predicted_<name>`` columns)."""
        import pandas as pd

        impls = self._impls("discovery_batch_proposed")
        if not impls:
            return
        frame = proposals.drop(columns=["predicted", "created_at"], errors="ignore")
        if "predicted" in proposals:
            predicted = pd.DataFrame(list(proposals["predicted"]), index=proposals.index)
            frame = pd.concat([frame, predicted.add_prefix("predicted_")], axis=1)
        for impl in impls:
            self._call(impl, "discovery_batch_proposed", round=round_, proposals=frame.copy())

    def result_received(self, result: Result, candidate: Mapping[str, str]) -> Result | str:
        """Run :func:`discovery_result_received`: the (possibly replaced) result, or a reason to
        reject it naming the plugin."""
        from discovery.oracles.base import Result

        hook = "discovery_result_received"
        for impl in self._impls(hook):
            short = self._short[impl.plugin_name]
            answer = self._call(impl, hook, result=result, candidate=dict(candidate))
            if answer is None:
                continue
            if isinstance(answer, str):
                return f"{short}: {answer.strip() or 'rejected (no reason given)'}"
            if not isinstance(answer, Result):
                raise PluginError(
                    f"{short}, {hook}: returned {type(answer).__name__}; expected a Result "
                    "(replacement), a str (reason to reject) or None"
                )
            if (answer.candidate_id, answer.job_id) != (result.candidate_id, result.job_id):
                raise PluginError(
                    f"{short}, {hook}: the replacement is for candidate {answer.candidate_id!r} "
                    f"job {answer.job_id!r}, not {result.candidate_id!r} job {result.job_id!r}"
                )
            if answer != result:
                self._record(
                    "plugin_replaced_result",
                    plugin=impl.plugin_name,
                    candidate_id=result.candidate_id,
                    before=dict(result.values),
                    after=dict(answer.values),
                )
            result = answer
        return result

    def before_training(self, round_: int, frame: pd.DataFrame) -> pd.DataFrame:
        """Run :func:`discovery_before_training`; the frame to train on."""
        import pandas as pd

        hook = "discovery_before_training"
        for impl in self._impls(hook):
            short = self._short[impl.plugin_name]
            answer = self._call(impl, hook, round=round_, frame=frame.copy())
            if answer is None:
                continue
            if not isinstance(answer, pd.DataFrame):
                raise PluginError(
                    f"{short}, {hook}: returned {type(answer).__name__}; expected a pandas "
                    "DataFrame or None"
                )
            missing = [c for c in frame.columns if c not in answer.columns]
            if missing:
                raise PluginError(
                    f"{short}, {hook}: the returned frame lacks column(s) {', '.join(missing)}"
                )
            self._record(
                "plugin_training_rows",
                plugin=impl.plugin_name,
                round=round_,
                rows_before=len(frame),
                rows_after=len(answer),
            )
            frame = answer.reset_index(drop=True)
        return frame

    def after_training(
        self, round_: int, model: DeepEnsemble, frame: pd.DataFrame, model_dir: Path
    ) -> None:
        """Call :func:`discovery_after_training`."""
        for impl in self._impls("discovery_after_training"):
            self._call(
                impl,
                "discovery_after_training",
                round=round_,
                model=model,
                frame=frame.copy(),
                model_dir=model_dir,
            )
