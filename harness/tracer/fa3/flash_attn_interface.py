"""Stand-in for FlashAttention-3's ``flash_attn_interface`` where FA3 is not installed (CPU runs, the audit).

``flash_attn_func(q, k, v, causal=...)`` on (B, T, H, D) tensors through ``scaled_dot_product_attention``; K/V may
have fewer heads than Q (grouped-query attention). Returns the output only (FA3's ``return_attn_probs`` is not
supported), matching how the record scripts call it.
"""

import torch.nn.functional as F

__version__ = "scorefirst-standin"


def flash_attn_func(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    deterministic=False, **_):
    if window_size not in ((-1, -1), [-1, -1], None):
        raise NotImplementedError("the scorefirst FA3 stand-in does not implement sliding-window attention")
    if softcap:
        raise NotImplementedError("the scorefirst FA3 stand-in does not implement attention softcap")
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                       scale=softmax_scale, enable_gqa=k.size(2) != q.size(2))
    return y.transpose(1, 2)
