"""The experiment registry behind ``python main.py --exp NAME``.

An experiment is a name, the schema of its ``model`` config section, its default config file,
and a function that runs it; an experiment whose checkpoints hold a first stage or a predictor
also says how to load them (:mod:`tools.pretrained`). The shipped experiments are listed in
:func:`builtin_experiments`; ``main.py``, ``validate.py`` and extraction know nothing about any
particular one.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from omegaconf import OmegaConf

from tools.config import ConfigError, RunConfig, build_config, check_values, raw_config

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from models.interface import FirstStage


@dataclass(frozen=True)
class FirstStageEntry:
    """How an experiment's checkpoints give a first stage (:class:`models.interface.FirstStage`)."""

    # ``build(run_cfg, state)``: the first stage of a checkpoint (its saved config and its
    # contents), with its trained weights (EMA when present), in eval mode.
    build: Callable[["DictConfig", dict], "FirstStage"]
    # ``tokens(first_stage, cond_frames)``: what ``--exp extract`` stores of it (an object with
    # ``shapes``, ``codebook_size``, ``encode(video)``, ``codebook()``, ``meta()``, as
    # models.latent_space.SemanticTokens); None for a first stage without discrete tokens.
    tokens: Optional[Callable[[Any, int], Any]] = None


@dataclass(frozen=True)
class Experiment:
    name: str
    # Returns a fresh dataclass instance: the schema (and defaults) of the ``model`` section.
    model_schema: Callable[[], Any]
    # ``run(cfg, run_dir, resume, device)``; returns a process exit code (0 = success).
    run: Callable[..., int]
    default_config: Optional[str] = None
    # False for experiments that write no run folder of their own (e.g. token extraction).
    uses_run_dir: bool = True
    # ``build_task(cfg, device)`` -> the TrainTask a training experiment runs (lets tools such as
    # scripts/measure_memory.py build the same task); None for experiments that do not train.
    build_task: Optional[Callable[..., Any]] = None
    # ``prepare_config(cfg)``: completes or checks the config in place before the run folder is
    # made and the config saved (e.g. clip geometry taken from a first-stage checkpoint).
    prepare_config: Optional[Callable[[Any], None]] = None
    description: str = ""
    # ``select_model_schema(raw)``: the ``model`` schema for a config whose YAML files and
    # overrides, merged unchecked, are ``raw`` (e.g. the denoiser's own schema by ``model.net``);
    # None: always ``model_schema()``.
    select_model_schema: Optional[Callable[["DictConfig"], Any]] = None
    # Experiments whose checkpoints hold a first stage (first_stage, gan).
    first_stage: Optional[FirstStageEntry] = None
    # ``load_predictor(checkpoint, device, raw_weights=False)``: the
    # :class:`models.interface.Predictor` of a checkpoint of this experiment (its path or its
    # loaded contents); None for experiments that predict nothing.
    load_predictor: Optional[Callable[..., Any]] = None
    # For a ``--exp`` name that several methods share (:func:`shared_experiment`): the method's own
    # Experiment for a config (a YAML file's, a run's or a checkpoint's). None: a single method.
    method_for: Optional[Callable[["DictConfig"], "Experiment"]] = None

    def for_config(self, cfg: "DictConfig") -> "Experiment":
        """The Experiment that handles ``cfg``: this one, or the method ``cfg`` names."""
        return self if self.method_for is None else self.method_for(cfg)


def shared_experiment(name: str, method_key: str, method_of: Callable[["DictConfig"], Optional[str]],
                      methods: dict[str, Experiment]) -> Experiment:
    """One ``--exp name`` for several methods (e.g. ``first_stage`` for MOSO and PVDM autoencoders).

    Each config says which method it is (``method_of(cfg)``, read from ``method_key``, e.g.
    ``model.arch``); that method's Experiment (named ``name`` too, so its checkpoints record
    ``exp: name``) runs it, checks it against its own ``model`` schema and loads its checkpoints.
    The first method is the default (``method_of`` None: a config that does not name one)."""
    for method in methods.values():
        if method.name != name:
            raise ValueError(f"method experiment '{method.name}' must be named '{name}'")

    def pick(cfg: "DictConfig") -> Experiment:
        method = method_of(cfg) or next(iter(methods))
        if method not in methods:
            raise ConfigError(f"{method_key}: unknown method '{method}' for --exp {name}; "
                              f"available: {', '.join(methods)}")
        return methods[method]

    def prepare(cfg: "DictConfig") -> None:
        chosen = pick(cfg)
        if chosen.prepare_config is not None:
            chosen.prepare_config(cfg)

    def schema(raw: "DictConfig") -> Any:
        chosen = pick(raw)
        return chosen.model_schema() if chosen.select_model_schema is None else chosen.select_model_schema(raw)

    def predictor_of(checkpoint: Any, device: Any = "cpu", raw_weights: bool = False) -> Any:
        if not isinstance(checkpoint, dict):  # a path: read once, then handed to the method
            from tools.checkpoint import load_checkpoint

            checkpoint = load_checkpoint(checkpoint, exps=(name,))
        return pick(OmegaConf.create(checkpoint["config"])).load_predictor(checkpoint, device, raw_weights=raw_weights)

    def first_stage_of(run_cfg: "DictConfig", state: dict) -> "FirstStage":
        return pick(run_cfg).first_stage.build(run_cfg, state)

    default = next(iter(methods.values()))
    has_first_stage = any(m.first_stage is not None for m in methods.values())
    has_predictor = any(m.load_predictor is not None for m in methods.values())
    return Experiment(
        name=name, model_schema=default.model_schema, default_config=default.default_config,
        run=lambda cfg, run_dir, resume: pick(cfg).run(cfg, run_dir=run_dir, resume=resume),
        build_task=lambda cfg, device: pick(cfg).build_task(cfg, device),
        prepare_config=prepare, select_model_schema=schema,
        description="; or ".join(m.description for m in methods.values()),
        first_stage=FirstStageEntry(build=first_stage_of) if has_first_stage else None,
        load_predictor=predictor_of if has_predictor else None,
        method_for=pick)


EXPERIMENTS: dict[str, Experiment] = {}


@functools.cache
def builtin_experiments() -> tuple[Experiment, ...]:
    """The shipped experiments; a new method adds its module's experiments here.

    Imported on first use (each experiment module imports this one, and importing the registry
    should not pay for every model); built once, so each name keeps one Experiment."""
    from tools.experiments import ddpm, extract, first_stage, lvdm, pvdm, tubelet

    return (
        shared_experiment("first_stage", "model.arch", first_stage_arch,
                          {"moso": first_stage.FIRST_STAGE, "pvdm": pvdm.PVDM_FIRST_STAGE,
                           "lvdm": lvdm.LVDM_FIRST_STAGE, "tubelet": tubelet.TUBELET_FIRST_STAGE}),
        first_stage.GAN, extract.EXTRACT,
        shared_experiment("ddpm", "model.net", denoiser_method, {"rsvp": ddpm.DDPM, "pvdm": pvdm.PVDM_DDPM,
                                                                 "lvdm": lvdm.LVDM_DDPM}),
        tubelet.TRANSFORMER,
    )


def first_stage_arch(cfg: "DictConfig") -> Optional[str]:
    """The first-stage method a config names: ``model.arch`` (None in configs and checkpoints without it)."""
    arch = OmegaConf.select(cfg, "model.arch", default=None)
    return None if arch is None else str(arch)


def denoiser_method(cfg: "DictConfig") -> Optional[str]:
    """The second-stage method of a config: the ``method`` its denoiser (``model.net``) names, if any."""
    from models import get_model_class

    net = OmegaConf.select(cfg, "model.net", default=None)
    if net is None:
        return None
    try:
        return getattr(get_model_class(str(net)), "method", None)
    except KeyError as err:
        raise ConfigError(f"model.net: {err.args[0]}") from None


def register_experiment(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"experiment '{experiment.name}' is registered twice")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def load_experiments() -> dict[str, Experiment]:
    for experiment in builtin_experiments():
        register_experiment(experiment)
    return EXPERIMENTS


def get_experiment(name: str) -> Experiment:
    experiments = load_experiments()
    if name not in experiments:
        available = ", ".join(sorted(experiments)) or "none registered yet"
        raise ConfigError(f"Unknown experiment '--exp {name}'. Available: {available}.")
    return experiments[name]


def resolve_default_config(experiment: Experiment) -> Optional[Path]:
    if experiment.default_config is None:
        return None
    return Path(__file__).resolve().parent.parent / experiment.default_config


def experiment_config(exp: str, config_path: Optional[str | Path] = None, overrides: Sequence[str] = (),
                      prepare: bool = False):
    """The config ``main.py --exp exp`` builds: the experiment's schema, the YAML file (default: the
    experiment's own) with its ``base:`` files, then the overrides; with ``prepare``, the
    experiment's ``prepare_config`` applied as well (it may read checkpoints)."""
    experiment = get_experiment(exp)
    path = config_path if config_path is not None else resolve_default_config(experiment)
    try:
        cfg = build_config(run_schema(experiment, path, overrides), path, list(overrides))
    except ConfigError:
        if path is not None:
            _check_stage_of_file(experiment, path)
        raise
    check_values(cfg)
    if prepare and experiment.prepare_config is not None:
        experiment.prepare_config(cfg)
    return cfg


def run_schema(experiment: Experiment, config_path: Optional[str | Path] = None,
               overrides: Sequence[str] = ()) -> RunConfig:
    """The schema a config of ``experiment`` (default file: the experiment's own) is checked
    against, and whose defaults it starts from."""
    if experiment.select_model_schema is None:
        model = experiment.model_schema()
    else:
        path = config_path if config_path is not None else resolve_default_config(experiment)
        model = experiment.select_model_schema(raw_config(path, list(overrides)))
    return RunConfig(exp=experiment.name, model=model)


def _check_stage_of_file(experiment: Experiment, path: str | Path) -> None:
    """A config file that another stage's schema accepts is named as that stage's (not 'unknown key')."""
    others = [e for e in EXPERIMENTS.values() if e.model_schema is not experiment.model_schema]
    for other in others:
        try:
            build_config(RunConfig(exp=other.name, model=other.model_schema()), path)
        except ConfigError:
            continue
        raise ConfigError(f"{path} is a config for --exp {other.name}, not for --exp {experiment.name}: "
                          f"pass --exp {other.name}, or a config of the {experiment.name} stage")
