"""Which weights AdamW decays: the 2-D weights of the linear (and convolution-as-linear) layers."""

from torch import nn


def weight_decay_groups(net: nn.Module) -> list[dict]:
    """Two parameter groups of ``net``'s trainable parameters: the 2-D weights that are not
    embeddings take the optimizer's ``weight_decay``; biases, norm weights and embeddings
    (an output head tied to an embedding too) get 0. Frozen parameters are left out."""
    embeddings = {id(p) for m in net.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2 and id(p) not in embeddings]
    rest = [p for p in trainable if p.dim() < 2 or id(p) in embeddings]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
