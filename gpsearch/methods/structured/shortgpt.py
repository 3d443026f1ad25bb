"""ShortGPT (seed 002 / reference section 5): remove the ``n`` decoder layers with the lowest
Block Influence, BI_i = 1 - mean over calibration tokens of cos(input of layer i, output of
layer i).

The hidden states are taken at the blocks themselves (``blockwise.capture_block_inputs`` and one
run of each block), not from ``output_hidden_states``, whose last entry already went through the
final norm. Every token of every calibration sample counts. The seed's ``--num_samples`` /
``--seq_len`` / ``--stride`` are replaced by the shared calibration configuration (``CalibConfig``:
random crops of ``seqlen`` tokens). Works for any family ``models.decoder_blocks`` understands
(LLaMA-style and OPT); the smaller model saves and reloads with a plain ``from_pretrained``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpsearch.config import CalibConfig
from gpsearch.errors import UserError
from gpsearch.methods.structured.surgery import param_count, remove_layers
from gpsearch.model.blocks import decoder_blocks
from gpsearch.model.blockwise import capture_block_inputs
from gpsearch.model.data import calibration_samples


@torch.no_grad()
def block_influence(model, samples: torch.Tensor, batch_size: int) -> torch.Tensor:
    """BI of every decoder layer (float64 [layers]), on the dense model."""
    was = model.training
    model.eval()
    try:
        inputs = capture_block_inputs(model, samples, batch_size)
        blocks = decoder_blocks(model)
        bi = torch.zeros(len(blocks), dtype=torch.float64)
        for i, block in enumerate(blocks):
            total, count, nxt = 0.0, 0, []
            for inp in inputs:
                out = inp.run(block)
                cos = F.cosine_similarity(inp.hidden.double(), out.double(), dim=-1)
                total += float(cos.sum())
                count += cos.numel()
                nxt.append(inp.with_hidden(out))
            bi[i] = 1.0 - total / count
            inputs = nxt
    finally:
        model.train(was)
    return bi


def lowest(bi: torch.Tensor, n: int) -> list[int]:
    """Indices of the n layers with the lowest BI (ties: the lower index), ascending."""
    if not 0 <= n < bi.numel():
        raise UserError(f"cannot remove {n} of {bi.numel()} layers")
    return sorted(torch.sort(bi, stable=True).indices[:n].tolist())


def shortgpt(lm, calib: CalibConfig, n_remove: int) -> dict:
    """Remove the ``n_remove`` lowest-BI layers of ``lm.model`` in place; returns a record."""
    model = lm.model
    before = param_count(model)
    n_layers = len(decoder_blocks(model))
    bi = block_influence(model, calibration_samples(lm.tokenizer, calib), calib.batch_size)
    drop = remove_layers(model, lowest(bi, n_remove))
    return {"method": "shortgpt", "n_remove_layers": n_remove, "removed_layers": drop,
            "block_influence": [round(float(v), 6) for v in bi], "layers_before": n_layers,
            "layers_after": n_layers - len(drop), "params_before": before,
            "params_after": param_count(model), "calibration": calib.to_dict()}
