"""PG-NET: network access from a submission."""
from __future__ import annotations

import libcst as cst

from audits.rulekit import (
    Condition,
    Confidence,
    Hit,
    Invalid,
    P,
    Rule,
    Ruling,
    Severity,
    Valid,
    dotted,
)


class NetworkAccess(Rule):
    """Flags imports of network modules and calls that download.

    What it flags:
        `import requests`, `urllib.request`, `socket`, `http.client`, `huggingface_hub`, `datasets`,
        `torch.hub` and calls such as `urlopen`, `snapshot_download`, `hf_hub_download`, `load_dataset`,
        `load_state_dict_from_url` (a call is reported on its own only when its module import is not).

    Why it is illegal:
        The artifact must be self-contained: no external downloads, training-data access or network calls
        during evaluation.

    Example:
        from huggingface_hub import snapshot_download
        snapshot_download("someone/ngram-tables")

    Use instead:
        Ship everything inside the 16,000,000-byte artifact.
    """

    id = "PG-NET"
    name = "network-access"
    conditions = (Condition.NET,)
    severity = Severity.ERROR
    confidence = Confidence.HIGH
    message = "Uses the network"
    ruling = Ruling(
        "README FAQ (organizers)",
        "openai/parameter-golf README",
        "No external downloads, training-data access or network calls during evaluation; the artifact must be "
        "self-contained.",
        "maintainer ruling",
    )
    VALID = [Valid("""
        import os, urllib.parse
        import torch
        path = os.path.join("data", urllib.parse.quote("x"))
    """)]
    INVALID = [Invalid("""
        import os
        import urllib.request
        data = urllib.request.urlopen("https://example.com/tables.bin").read()
    """, line=2)]

    def check(self, ctx):
        prog = ctx.prog
        flagged_names: set[str] = set()
        for n in prog.nodes_of(cst.Import, cst.ImportFrom):
            if type(n) is cst.Import:
                for alias in n.names:
                    name = cst.helpers.get_full_name_for_node(alias.name) or ""
                    if P.is_network_module(name):
                        flagged_names.add(alias.asname.name.value if alias.asname else name.split(".")[0])
                        yield Hit(n, f"imports network module `{name}`")
                        break
            elif type(n) is cst.ImportFrom and n.module is not None and type(n.names) is not cst.ImportStar:
                mod = cst.helpers.get_full_name_for_node(n.module) or ""
                names = [cst.helpers.get_full_name_for_node(a.name) or "" for a in n.names]
                hits = [x for x in names if P.is_network_module(f"{mod}.{x}")] if not P.is_network_module(mod) else names
                if hits:
                    flagged_names.update(hits)
                    yield Hit(n, f"imports `{', '.join(hits)}` from network module `{mod}`"
                              if P.is_network_module(mod) else f"imports network module `{mod}.{hits[0]}`")
        for n in prog.nodes_of(cst.Call):
            fn = dotted(n.func)
            if P.NETWORK_CALLS.search(fn) and fn.split(".")[0] not in flagged_names:
                yield Hit(n, f"`{fn}` downloads from the network")
