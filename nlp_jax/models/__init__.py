"""Model families: one file each, ``XConfig`` + module + ``tiny()``."""
