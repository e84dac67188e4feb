"""Vision: a ViT encoder, pixel shuffle and a linear projector onto lmstack's language model.

The shape is SmolVLM's (Idefics3): every image becomes tiles of the encoder's input size plus one
global view; each view is encoded by the ViT, its patch grid folded by pixel shuffle (fewer,
wider tokens) and projected into the language model's embedding space, where the features take
the places of reserved image tokens in the prompt. The same layout, keys and tensor names are
what llama.cpp's `idefics3` projector reads, so an exported pair (model.gguf + mmproj.gguf)
runs there unchanged.
"""
