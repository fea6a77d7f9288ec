"""The image layout every layer shares: uint8 or float arrays [N, S, S, CHANNELS]. Datasets
convert every source to it (grayscale, palette and RGBA become RGB) and models take and give
it, so both import the channel count from here."""

CHANNELS = 3   # RGB
