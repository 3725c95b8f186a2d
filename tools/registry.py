"""The experiment registry behind ``python main.py --exp NAME``.

An experiment is a name, the schema of its ``model`` config section, its default config file,
and a function that runs it; an experiment whose checkpoints hold a first stage or a predictor
also says how to load them (:mod:`tools.pretrained`). The shipped experiments are listed in
:func:`builtin_experiments`; ``main.py``, ``validate.py`` and extraction know nothing about any
particular one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

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


EXPERIMENTS: dict[str, Experiment] = {}


def builtin_experiments() -> list[Experiment]:
    """The shipped experiments; a new method adds its module's experiments here.

    Imported on first use (each experiment module imports this one, and importing the registry
    should not pay for every model)."""
    from tools.experiments import ddpm, extract, first_stage

    return [first_stage.FIRST_STAGE, first_stage.GAN, extract.EXTRACT, ddpm.DDPM]


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
