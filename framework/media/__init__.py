"""Media: the ffmpeg that imageio-ffmpeg ships, MP4 facts read in-process, the soundtrack
(subtitles, the narration mix, loudness), the film's assembly and the bundled font.

May import: reelforge.store (safe files, digests) and the leaf modules. Never
reelforge.engine, reelforge.cli or reelforge.web."""
