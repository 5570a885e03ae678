"""ComfyUI API-format graphs used by the integration tests."""
import copy

BASE_CKPT = "sd_xl_base_1.0.safetensors"
REFINER_CKPT = "sd_xl_refiner_1.0.safetensors"


def sdxl_refiner(width=1024, height=1024, seed=42, prefix="sdxl", steps=25, split=20,
                 positive="a lighthouse on a cliff at sunset, detailed",
                 negative="blurry, low quality"):
    """The SDXL base + refiner graph of comfyui-protocol.md section 6.1."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": BASE_CKPT}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": REFINER_CKPT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["2", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["2", 1]}},
        "7": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": 1}},
        "8": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["1", 0], "add_noise": "enable", "noise_seed": seed, "steps": steps,
            "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["7", 0],
            "start_at_step": 0, "end_at_step": split,
            "return_with_leftover_noise": "enable"}},
        "9": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["2", 0], "add_noise": "disable", "noise_seed": seed, "steps": steps,
            "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["8", 0],
            "start_at_step": split, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": prefix}},
    }


def ksampler(width=64, height=64, seed=1, steps=30, prefix="ks", ckpt=BASE_CKPT):
    """Single KSampler txt2img graph (nodes 3-9, like the tiny_sd15 transcript)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


def empty_image(width=64, height=64, color=0, prefix="img", batch_size=1,
                image_id="1", save_id="2"):
    """EmptyImage -> SaveImage: no sampler, fast, size chosen by the caller."""
    return {
        image_id: {"class_type": "EmptyImage", "inputs": {
            "width": width, "height": height, "batch_size": batch_size, "color": color}},
        save_id: {"class_type": "SaveImage",
                  "inputs": {"images": [image_id, 0], "filename_prefix": prefix}},
    }


def multi_save(outputs):
    """outputs: list of (save_node_id, width, height, prefix), in the JSON order
    wanted. Each SaveImage has its own EmptyImage source node ("src<id>")."""
    g = {}
    for nid, w, h, prefix in outputs:
        src = "src" + nid
        g[src] = {"class_type": "EmptyImage",
                  "inputs": {"width": w, "height": h, "batch_size": 1, "color": (w * 7919) & 0xFFFFFF}}
        g[nid] = {"class_type": "SaveImage", "inputs": {"images": [src, 0], "filename_prefix": prefix}}
    return g


def with_prefix(graph, prefixes):
    """Copy of graph with filename_prefix inputs replaced: {node_id: new_prefix}."""
    g = copy.deepcopy(graph)
    for nid, p in prefixes.items():
        g[nid]["inputs"]["filename_prefix"] = p
    return g


def strip_prefixes(graph):
    """Copy of graph without filename_prefix inputs (to compare graphs modulo the rewrite)."""
    g = copy.deepcopy(graph)
    for node in g.values():
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            node["inputs"].pop("filename_prefix", None)
    return g
