"""What the class-conditional image models share: the labels they draw images of."""

import torch


def drawn_labels(num_classes: int | None, num_samples: int, labels, device) -> torch.Tensor | None:
    """The labels (N,) a model of ``num_classes`` draws: ``labels`` (one for all, or one each),
    else every class in turn (0, 1, ..., 0, 1, ...). None for an unconditional model, which
    refuses labels."""
    if num_classes is None:
        if labels is not None:
            raise ValueError("this model is unconditional: it takes no label (trained with model.num_classes=null)")
        return None
    if labels is None:
        return torch.arange(num_samples, device=device) % num_classes
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).expand(num_samples)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"a label must be between 0 and {num_classes - 1} (the model's num_classes)")
    return labels
