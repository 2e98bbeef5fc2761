"""The analyzer's vocabulary: how submissions name validation data, targets, accumulators and optimizers.

Every heuristic name match lives here so a reviewer can see (and a rule doc can cite) exactly what the
program model recognises. Names are matched on the last component (`val_data.val_tokens` → `val_tokens`).
"""
from __future__ import annotations

import re

# Taint sources -----------------------------------------------------------------------------------------
VAL_NAME = re.compile(
    r"^(val|valid|validation|eval|test)_(tokens?|toks?|ids|data|np|arr|stream|docs?|seqs?|buf|buffer|set|split|files?|"
    r"pattern|path|glob|shards?|slice|chunk|x|y|inputs?|targets?)$|^val_tok\w*$|^val$"
)
VAL_CALL = re.compile(r"(^|_)(load_val\w*|load_validation\w*|validation_tokens|val_loader|make_val\w*)$")
VAL_STRING = re.compile(r"fineweb_val|_val_\*|val_\d+\.bin|/val[/_*]")
TRAIN_NAME = re.compile(
    r"^(train|training)_(loader|stream|tokens?|toks?|files?|data|ds|dataset|iter|batches|pattern|glob|shards?|np|buf)$"
)
TRAIN_STRING = re.compile(r"fineweb_train|train_\*|train_\d+\.bin")
TARGET_NAME = re.compile(
    r"^(y|ys|yb|y_np|y_batch|y_flat|y_cur|tgt|tgts|tgt_np|target|targets|targets_flat|target_ids|target_tok\w*|gold|"
    r"gold_idx|gold_ids|gold_tok\w*|labels|next_tok|next_tokens|true_tok\w*|cur_tok|tok_t|x_t)$"
)

# Events ------------------------------------------------------------------------------------------------
SCORE_ACC = re.compile(r"(loss|nll|bits|logp|log_prob|logprob|(^|_)ce(_|$)|(^|_)ptl(_|$)|score|bpb|entropy|cross_entropy|"
                       r"log_softmax)", re.I)
# Calls whose result is a loss or log-probability of the targets: an accumulation computed from one holds a loss,
# whatever the accumulator is called (`acc += out.sum()` after `out = F.cross_entropy(...)`).
LOSS_CALL = re.compile(r"(^|\.)(cross_entropy|nll_loss|log_softmax|binary_cross_entropy\w*|kl_div|log_prob)$")
NOT_SCORE_ACC = re.compile(r"^(train|tr|running|avg_train|warmup|ttt_train|grad)_?|train_loss", re.I)
COUNT_NAME = re.compile(r"(byte|bytes|count|numel|tok_cnt|n_tok|ntok)", re.I)
REPORTED_NAME = re.compile(r"(val_loss|val_bpb|bpb|bits_per_byte|final_loss|q_val|quant_val)", re.I)
OPTIMIZER_NAME = re.compile(r"(^|_)(opt|optim|optimi[sz]er|optimizers|opts|muon|adam\w*|sgd|lbfgs|lion)(_|\d|s|$)", re.I)
NOT_OPTIMIZER = re.compile(r"sched|scaler|warmup_sched|lr_", re.I)
OPTIMIZER_CLASS = re.compile(r"(Optimizer|Adam\w*|SGD|Muon|Lion|LBFGS|RMSprop|Adagrad|Adafactor|Sophia|Shampoo)$")
QUANT_CALL = re.compile(r"(quantiz|serializ|gptq_mixed|gptq_quant|mixed_quant|pack_state|export_artifact|save_artifact|"
                        r"compress_model|int[68]_|^torch\.save$)", re.I)
DEQUANT_CALL = re.compile(r"(dequantiz|deserializ|load_artifact|unpack_state)", re.I)  # loading, not quantizing
CALIB_CALL = re.compile(r"(hessian|calibrat|gptq_calib|collect_stats|collect_act)", re.I)
# A calibration reads a model and data; only the data taints it. A parameter used as a module (called, or asked
# for its modules/parameters/hooks) is the model; an argument named like one is, when the callee is unknown.
MODEL_METHODS = frozenset({"named_modules", "modules", "parameters", "named_parameters", "state_dict", "eval", "train",
                           "register_forward_hook", "register_forward_pre_hook", "forward", "forward_logits", "children",
                           "named_children", "apply", "zero_grad", "requires_grad_"})
MODEL_NAME = re.compile(r"(^|_)(model|net|gpt|module|lm|transformer)s?$|^(base|ema|eval|ttt|swa)_model", re.I)
PARAM_NAMES = frozenset({"p", "param", "params", "w", "weight", "weights", "tensor", "buf"})
RESTORE_CALL = re.compile(r"(load_state_dict|restore\w*|reset_parameters|reset_state|reload\w*)$")
CACHE_TABLE = re.compile(r"(count|cache|table|(^|_)tabs?(_|$)|ngram|n_gram|hash|bucket|freq|ctx_c|full_c|pair_c|trie|ppm)", re.I)
# `cache.update(...)`, `cache.update_batch(...)`, `table.add_chunk(...)`: filling a cache or count table
CACHE_UPDATE_METHOD = re.compile(r"^(update|add|observe|push|insert|ingest|record)(_\w+)?$")
LOADER_CLASS = re.compile(r"(Loader|Stream|DataLoader|TokenStream)$")
REPEAT_VAR = re.compile(r"^_?(ep|epoch|epochs|_ep|e|pass_?i?d?x?|passes|p_i|rep|repeat|r|trial|round|sweep|it|iter|_)$|epoch|pass", re.I)
REPEAT_ITER = re.compile(r"(epoch|pass|repeat|n_iter|num_iter|reps|rounds|sweeps)", re.I)
WALLCLOCK = re.compile(r"(wallclock|elapsed|time_budget|max_time|deadline|stop_after|train_time|approx_training_time)", re.I)
RESERVE = re.compile(r"(reserve|gptq_\w*(ms|sec|secs|seconds)|calib\w*_(ms|sec|secs|seconds)|export_\w*(ms|seconds))", re.I)
BOS_MASK = re.compile(r"(bos|BOS|doc_start|doc_boundary|boundary|is_start|new_doc|doc_mask|reset_mask)")
TOKEN_IDS = re.compile(r"^(input_ids|idx|ids|tokens?|toks|token_ids|x_ids|prev_ids|inp|input_seq|seq)$")
NETWORK_MODULES = (
    "requests", "urllib.request", "urllib3", "http.client", "socket", "huggingface_hub", "aiohttp", "httpx",
    "ftplib", "smtplib", "paramiko", "boto3", "botocore", "wget", "pycurl", "websocket", "websockets", "datasets",
    "gdown", "kaggle", "torch.hub",
)
NETWORK_CALLS = re.compile(
    r"(^|\.)(urlopen|urlretrieve|snapshot_download|hf_hub_download|load_dataset|download_url|"
    r"load_state_dict_from_url|create_connection)$"
)


def last_part(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


def is_network_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES)

# Dynamic code ------------------------------------------------------------------------------------------
EXEC_FUNCS = ("exec", "eval", "compile")  # calls whose string argument is code: decoded when packed, else SF-EXEC-001
