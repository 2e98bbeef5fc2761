"""Stand-in for FlashAttention-3's ``flash_attn_interface`` where FA3 is not installed (CPU runs, the audit).

``flash_attn_func(q, k, v, causal=...)`` on (B, T, H, D) tensors through ``scaled_dot_product_attention``; K/V may
have fewer heads than Q (grouped-query attention). ``flash_attn_varlen_func`` on packed (total, H, D) tensors with
``cu_seqlens`` boundaries, one sequence at a time (documents never attend across their boundary). Returns the output
only (FA3's ``return_attn_probs`` is not supported), matching how the record scripts call it.
"""

import torch
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


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, **_):
    if window_size not in ((-1, -1), [-1, -1], None):
        raise NotImplementedError("the scorefirst FA3 stand-in does not implement sliding-window attention")
    if softcap:
        raise NotImplementedError("the scorefirst FA3 stand-in does not implement attention softcap")
    bq, bk = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    out = torch.empty_like(q)
    for (a, b), (c, d) in zip(zip(bq[:-1], bq[1:]), zip(bk[:-1], bk[1:])):
        if b > a:
            out[a:b] = flash_attn_func(q[None, a:b], k[None, c:d], v[None, c:d], softmax_scale, causal)[0]
    return out
