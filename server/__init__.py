"""The voice tutor platform: companions, spoken lessons, lesson history, bookmarks and plans."""

import os

# The voice pipeline runs many small model calls at once, one per lesson, each on one thread. numpy's
# OpenBLAS would otherwise start a thread per core for every matrix product (Whisper's and smart-turn's mel
# features) and keep them spinning after it: measured, a third more CPU per transcription for no speed.
# Set before numpy loads; an operator's own value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
