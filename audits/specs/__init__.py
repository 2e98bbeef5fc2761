"""The specs of evidence the static rules do not produce, one module per kind (`audits.spec.Spec`)."""
