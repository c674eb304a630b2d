"""The console seam, core side (no Textual): the event bus the service publishes on, the immutable events, the
console's model built from them, and the two sources a console reads through (in-process and remote)."""
