"""Every tag aigc writes on an MLflow run, in one place: the runs, the sweeps' parents, the
compare report and the reaper read and write them by these names (they are part of the
interface: searches and the UI's columns use them)."""

# a run
OVERRIDES = "aigc.overrides"  # the command line's overrides, as typed
RESUME_CHANGED = "aigc.resume.changed"  # what a resumed command changed in the config
CHECKPOINTS = "aigc.checkpoints"  # the folder the run writes its checkpoints to
HEARTBEAT = "aigc.heartbeat"  # seconds since the epoch, refreshed while the run trains
END = "aigc.end"  # "lost": ended FAILED by `aigc.runs reap`, its heartbeat stopped
TASK = "aigc.task"  # "evaluate" on a run that scored a model as configured, untrained (aigc.evaluate model=...)
PRECISION = "aigc.precision"  # what the Trainer computed in, and why ("bf16-mixed (auto: a CUDA GPU with bf16)")
OBJECTIVE = "aigc.objective"  # "<mode> <metric>": what "best" means for the run (conf/objective/)
PUSHED_FROM = "aigc.pushed_from"  # the id of the run this one was copied from by aigc.push (another store's)
SLURM_JOB = "aigc.slurm.job_id"  # the SLURM job that trains the run: its requeued start continues it
RERUN_OF = "aigc.rerun_of"  # the id of the run whose stored config this run recomposed (aigc.run rerun=)

# an experiment: which of its views the MLflow UI opens (MLflow's own tag, which the UI writes when a
# user switches views); aigc's experiments are model training, not the GenAI view (traces, prompts)
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

# a sweep: its parent run, and each job's run
SWEEP_ID = "aigc.sweep.id"  # the Optuna study, or a digest of a grid's command line
SWEEP_ROLE = "aigc.sweep.role"  # "parent" on the sweep's own run
SWEEP_JOB = "aigc.sweep.job"  # the job's number (the Optuna trial's)
SWEEP_PRUNED = "aigc.sweep.pruned"  # "true" on a job the Optuna pruner stopped (its run ends KILLED)
SWEEP_DIR = "aigc.sweep.dir"  # the sweep's output folder
SWEEP_OBJECTIVE = "aigc.sweep.objective"  # "<mode> <metric>"
SWEEP_OVERRIDES = "aigc.sweep.overrides"
BEST_RUN_ID = "aigc.sweep.best_run_id"
BEST_RUN_NAME = "aigc.sweep.best_run_name"

# provenance (without the aigc. prefix: they read as plain facts in the UI)
GIT_COMMIT, GIT_DIRTY, HOST = "git.commit", "git.dirty", "host"
VERSIONS = "versions."  # + a package's name
DATA_NAME, DATA_SOURCE, DATA_DIGEST = "data.name", "data.source", "data.digest"
DATA_CAPTIONS = "data.captions"  # where a captioned dataset's captions came from (metadata.jsonl, .txt files, grammar)
# what the image and text metrics were computed with (+ the setting's name): only like is compared with like
IMAGE_METRICS, TEXT_METRICS = "metrics.images.", "metrics.text."
PROMPT_METRICS = "metrics.prompts."  # the prompt accuracy's verifier and prompt set, the CLIP score's model
