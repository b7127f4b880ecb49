"""Streaming: new ratings from a landing folder into bronze exactly once, folded into the champion."""
