"""Continue a prompt with a trained language model.

python -m aigc.sample run_id=<id> prompt="ROMEO:"
python -m aigc.sample ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt prompt="def " temperature=0
"""

import tempfile

import hydra
from omegaconf import DictConfig

from aigc.callbacks import ConfigSnapshot
from aigc.console import entry_point, one_line_errors
from aigc.data.text import TextDataModule
from aigc.data.tokenizers import load_tokenizer
from aigc.stored import instantiate_stored, read_checkpoint
from aigc.tracking.checkpoints import checkpoint_of_run
from aigc.tracking.store import open_store


def load_language_model(ckpt_path: str):
    """(model, tokenizer) from a checkpoint alone: it carries the config and the fitted tokenizer."""
    checkpoint = read_checkpoint(ckpt_path)
    data_state = checkpoint.get(TextDataModule.__qualname__, {})
    if "tokenizer" not in data_state:
        raise ValueError(f"{ckpt_path} is not a language model's checkpoint (it holds no tokenizer)")
    tokenizer = load_tokenizer(data_state["tokenizer"])
    model = instantiate_stored(checkpoint[ConfigSnapshot.key]["model"], f"{ckpt_path}: model", _convert_="all")
    model.build(tokenizer.vocab_size)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), tokenizer


def sample(cfg: DictConfig) -> str:
    if not (cfg.run_id or cfg.ckpt_path):
        raise ValueError("say which model to sample: run_id=<mlflow run id> or ckpt_path=<checkpoint file>")
    with tempfile.TemporaryDirectory() as folder:
        path = cfg.ckpt_path or checkpoint_of_run(open_store(cfg.tracking_uri), cfg.run_id, cfg.checkpoint, folder)
        model, tokenizer = load_language_model(path)
    new_ids = model.generate(
        tokenizer.encode(cfg.prompt),
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )
    return cfg.prompt + tokenizer.decode(new_ids)


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        print(sample(cfg))


if __name__ == "__main__":
    entry_point(main)
