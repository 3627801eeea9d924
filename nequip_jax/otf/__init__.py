"""On-the-fly active learning: uncertainty-triggered labelling in Langevin MD.

``run_otf(config, workdir)`` runs (or resumes) one trajectory with an uncertainty trigger (a
registered method: GMM, LLPR, ensemble) or the random trigger (see :mod:`nequip_jax.otf.loop`);
``load_otf_config("cpu" | "tiny" | path)`` reads its configuration; :mod:`nequip_jax.otf.report`
summarises and plots a finished run.
"""

from nequip_jax.otf.config import PRESETS, TRIGGERS, OTFConfig, load_otf_config
from nequip_jax.otf.finetune import FineTuner, FineTuneResult, grow_budget
from nequip_jax.otf.loop import run_otf
from nequip_jax.otf.report import markdown_table, plot_trace, summarize_run
from nequip_jax.otf.session import broken_reason, evaluate_errors, run_keys
from nequip_jax.otf.state import EventLog, OTFState, load_state, read_events, save_state
from nequip_jax.otf.surrogate import Surrogate, threshold_from_scores

__all__ = [
    "PRESETS",
    "TRIGGERS",
    "EventLog",
    "FineTuneResult",
    "FineTuner",
    "OTFConfig",
    "OTFState",
    "Surrogate",
    "broken_reason",
    "evaluate_errors",
    "grow_budget",
    "load_otf_config",
    "load_state",
    "markdown_table",
    "plot_trace",
    "read_events",
    "run_keys",
    "run_otf",
    "save_state",
    "summarize_run",
    "threshold_from_scores",
]
