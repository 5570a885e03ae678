#!/usr/bin/python3
"""A ComfyUI 0.3.65 emulator for the comfy-sidecar tests.

It speaks ComfyUI's HTTP and websocket protocol (see /work/shared/comfyui-protocol.md and the
transcripts in /work/shared/comfyui-transcripts/) without a GPU or any model: node values are
symbolic (a LATENT knows its size and a seed-derived key, an IMAGE is a list of Pillow images),
SaveImage writes real PNG files, and the message sequence, routing, queue, history, cache and
validation behave as ComfyUI does. Fault injection and introspection live under /__emulator/
(see CONTROL.md beside this file).

Run with /usr/bin/python3 (Debian's python3-aiohttp and python3-pil).
This is an independent implementation written from a protocol description; it contains no
ComfyUI code.
"""

import argparse
import asyncio
import copy
import hashlib
import heapq
import io
import ipaddress
import json
import math
import mimetypes
import os
import random
import shutil
import socket
import struct
import sys
import time
import traceback
import uuid
import wave
from urllib.parse import urlparse

from aiohttp import web, WSMsgType
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

COMFYUI_VERSION = "0.3.65"
MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFFFFFFFFFFFFFF
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
MAX_HISTORY = 10000

SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal"]
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
                 "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx",
                 "controlnet", "gligen", "upscale_models", "custom_nodes", "hypernetworks",
                 "photomaker", "classifiers", "model_patches", "audio_encoders"]
OOM_MESSAGE = ("CUDA out of memory. Tried to allocate 4.50 GiB. GPU 0 has a total capacity of "
               "23.55 GiB of which 1.12 GiB is free. Of the allocated memory 20.87 GiB is "
               "allocated by PyTorch, and 1.04 GiB is reserved by PyTorch but unallocated.")
OOM_TIP = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked "
           "before you might have accidentally set the batch_size to a large number.")
FAKE_ROOT = "/opt/ComfyUI"
PROMPT_FAULTS = ("runtime_error", "oom", "crash", "hang", "ws_drop", "ws_silence")
REQUEST_FAULTS = ("slow_view", "view_error", "prompt_500")
AIOHTTP_500_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"
# VideoHelperSuite's image formats (its video formats need ffmpeg, which the emulator lacks)
VHS_FORMATS = ["image/gif", "image/webp"]


def now_ms():
    return int(time.time() * 1000)


def digest(*parts):
    """A stable 64-bit integer from any JSON-able parts."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


def is_link(value):
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def full_type_name(exc_type):
    mod = exc_type.__module__
    if mod in ("builtins", "__main__"):
        return exc_type.__qualname__
    return mod + "." + exc_type.__qualname__


# ---------------------------------------------------------------------------------------------
# Runtime exceptions raised by emulated nodes


class NodeRuntimeError(Exception):
    """An exception a node raises at run time, reported as execution_error."""

    def __init__(self, message, exception_type="Exception", tb=None, tip=""):
        super().__init__(message)
        self.message = message
        self.exception_type = exception_type
        self.tb = tb
        self.tip = tip


class Interrupted(Exception):
    pass


def fake_traceback(func, extra=()):
    """Traceback lines shaped like Python's, naming ComfyUI's files (no source text)."""
    lines = [
        '  File "%s/execution.py", line 498, in execute\n' % FAKE_ROOT,
        '  File "%s/execution.py", line 316, in get_output_data\n' % FAKE_ROOT,
        '  File "%s/execution.py", line 290, in _async_map_node_over_list\n' % FAKE_ROOT,
        '  File "%s/execution.py", line 278, in process_inputs\n' % FAKE_ROOT,
        '  File "%s/nodes.py", line 1500, in %s\n' % (FAKE_ROOT, func),
    ]
    return lines + list(extra)


# ---------------------------------------------------------------------------------------------
# Symbolic values


class Model:
    def __init__(self, kind, ckpt):
        self.kind = kind
        self.ckpt = ckpt

    def describe(self):
        names = {"MODEL": "comfy.model_patcher.ModelPatcher", "CLIP": "comfy.sd.CLIP",
                 "VAE": "comfy.sd.VAE"}
        return "<%s object at 0x%012x>" % (names[self.kind], digest(self.kind, self.ckpt) >> 16)


class Audio:
    """An AUDIO value: {"waveform": tensor [batch, channels, samples], "sample_rate": int} in
    ComfyUI; here 16-bit mono PCM samples (bytes, little-endian) for a batch of one."""

    def __init__(self, pcm, sample_rate):
        self.pcm, self.sample_rate = pcm, sample_rate

    def describe(self):
        return "{'waveform': tensor(<1x1x%d>), 'sample_rate': %d}" % (
            len(self.pcm) // 2, self.sample_rate)


class Conditioning:
    def __init__(self, key):
        self.key = key

    def describe(self):
        return "[[tensor([[[...]]]), {'pooled_output': tensor([[...]])}]]"


class Latent:
    def __init__(self, w, h, batch, key, pixels=None):
        self.w, self.h, self.batch, self.key, self.pixels = w, h, batch, key, pixels

    def describe(self):
        return "{'samples': tensor(<%dx4x%dx%d>)}" % (self.batch, self.h, self.w)


class Mask:
    def __init__(self, w, h, img=None):
        self.w, self.h = w, h
        self.img = img          # an "L" Pillow image (0 = 0.0, 255 = 1.0) or None (zeros)

    def describe(self):
        return "tensor(<1x%dx%d>)" % (self.h, self.w)


def describe_value(v):
    """A printable form like ComfyUI's current_inputs (scalars kept, objects stringified)."""
    if v is None or isinstance(v, (int, float, bool, str)):
        return v
    if isinstance(v, list) and v and isinstance(v[0], Image.Image):
        im = v[0]
        return "tensor(<%dx%dx%dx3>)" % (len(v), im.height, im.width)
    if hasattr(v, "describe"):
        return v.describe()
    return str(v)


# ---------------------------------------------------------------------------------------------
# Node definitions (object_info schemas)


def req(name, typ, **opts):
    return (name, [typ, opts] if opts else [typ])


class NodeDef:
    def __init__(self, name, display_name, category, required, outputs, output_names=None,
                 optional=(), hidden=(), output_node=False, description="", output_tooltips=None,
                 python_module="nodes", sampler=False, validate_inputs=()):
        self.name = name
        self.display_name = display_name
        self.category = category
        self.required = required        # list of (name, spec) or callable(emu) -> list
        self.optional = list(optional)
        self.hidden = list(hidden)      # list of (name, kind)
        self.outputs = outputs
        self.output_names = output_names or list(outputs)
        self.output_node = output_node
        self.description = description
        self.output_tooltips = output_tooltips
        self.python_module = python_module
        self.sampler = sampler
        self.validate_inputs = set(validate_inputs)

    def required_inputs(self, emu):
        return self.required(emu) if callable(self.required) else self.required

    def input_spec(self, emu, name):
        for n, spec in self.required_inputs(emu):
            if n == name:
                return spec, "required"
        for n, spec in self.optional:
            if n == name:
                return spec, "optional"
        return None, None

    def info(self, emu):
        required = self.required_inputs(emu)
        inp = {"required": {n: s for n, s in required}}
        order = {"required": [n for n, _ in required]}
        if self.optional:
            inp["optional"] = {n: s for n, s in self.optional}
            order["optional"] = [n for n, _ in self.optional]
        if self.hidden:
            inp["hidden"] = {n: k for n, k in self.hidden}
            order["hidden"] = [n for n, _ in self.hidden]
        out = {
            "input": inp,
            "input_order": order,
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.output_names),
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
        }
        if self.output_tooltips:
            out["output_tooltips"] = list(self.output_tooltips)
        return out


def sampler_common(seed_name):
    return [
        req(seed_name, "INT", default=0, min=0, max=SEED_MAX, control_after_generate=True,
            tooltip="The random seed used for creating the noise."),
        req("steps", "INT", default=20, min=1, max=10000,
            tooltip="The number of steps used in the denoising process."),
        req("cfg", "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
            tooltip="The Classifier-Free Guidance scale balances creativity and adherence to "
                    "the prompt. Higher values result in images more closely matching the "
                    "prompt however too high values will negatively impact quality."),
        ("sampler_name", [SAMPLERS, {"tooltip": "The algorithm used when sampling, this can "
                                                "affect the quality, speed, and style of the "
                                                "generated output."}]),
        ("scheduler", [SCHEDULERS, {"tooltip": "The scheduler controls how noise is gradually "
                                               "removed to form the image."}]),
    ]


def build_node_defs():
    size_opts = dict(default=512, min=16, max=MAX_RESOLUTION, step=8)
    defs = [
        NodeDef("CheckpointLoaderSimple", "Load Checkpoint", "loaders",
                lambda emu: [("ckpt_name", [emu.checkpoint_list(), {
                    "tooltip": "The name of the checkpoint (model) to load."}])],
                ["MODEL", "CLIP", "VAE"],
                description="Loads a diffusion model checkpoint, diffusion models are used to "
                            "denoise latents.",
                output_tooltips=["The model used for denoising latents.",
                                 "The CLIP model used for encoding text prompts.",
                                 "The VAE model used for encoding and decoding images to and "
                                 "from latent space."]),
        NodeDef("CLIPTextEncode", "CLIP Text Encode (Prompt)", "conditioning",
                [req("text", "STRING", multiline=True, dynamicPrompts=True,
                     tooltip="The text to be encoded."),
                 req("clip", "CLIP", tooltip="The CLIP model used for encoding the text.")],
                ["CONDITIONING"],
                description="Encodes a text prompt using a CLIP model into an embedding that "
                            "can be used to guide the diffusion model towards generating "
                            "specific images.",
                output_tooltips=["A conditioning containing the embedded text used to guide "
                                 "the diffusion model."]),
        NodeDef("CLIPTextEncodeSDXL", "CLIPTextEncodeSDXL", "advanced/conditioning",
                [req("clip", "CLIP"),
                 req("width", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("height", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("crop_w", "INT", default=0, min=0, max=MAX_RESOLUTION),
                 req("crop_h", "INT", default=0, min=0, max=MAX_RESOLUTION),
                 req("target_width", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("target_height", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("text_g", "STRING", multiline=True, dynamicPrompts=True),
                 req("text_l", "STRING", multiline=True, dynamicPrompts=True)],
                ["CONDITIONING"], python_module="comfy_extras.nodes_clip_sdxl"),
        NodeDef("CLIPTextEncodeSDXLRefiner", "CLIPTextEncodeSDXLRefiner", "advanced/conditioning",
                [req("ascore", "FLOAT", default=6.0, min=0.0, max=1000.0, step=0.01),
                 req("width", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("height", "INT", default=1024, min=0, max=MAX_RESOLUTION),
                 req("text", "STRING", multiline=True, dynamicPrompts=True),
                 req("clip", "CLIP")],
                ["CONDITIONING"], python_module="comfy_extras.nodes_clip_sdxl"),
        NodeDef("EmptyLatentImage", "Empty Latent Image", "latent",
                [req("width", "INT", tooltip="The width of the latent images in pixels.",
                     **size_opts),
                 req("height", "INT", tooltip="The height of the latent images in pixels.",
                     **size_opts),
                 req("batch_size", "INT", default=1, min=1, max=4096,
                     tooltip="The number of latent images in the batch.")],
                ["LATENT"],
                description="Create a new batch of empty latent images to be denoised via "
                            "sampling.",
                output_tooltips=["The empty latent image batch."]),
        NodeDef("KSampler", "KSampler", "sampling",
                [req("model", "MODEL", tooltip="The model used for denoising the input latent.")]
                + sampler_common("seed") +
                [req("positive", "CONDITIONING",
                     tooltip="The conditioning describing the attributes you want to include "
                             "in the image."),
                 req("negative", "CONDITIONING",
                     tooltip="The conditioning describing the attributes you want to exclude "
                             "from the image."),
                 req("latent_image", "LATENT", tooltip="The latent image to denoise."),
                 req("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01,
                     tooltip="The amount of denoising applied, lower values will maintain the "
                             "structure of the initial image allowing for image to image "
                             "sampling.")],
                ["LATENT"], sampler=True,
                description="Uses the provided model, positive and negative conditioning to "
                            "denoise the latent image.",
                output_tooltips=["The denoised latent."]),
        NodeDef("KSamplerAdvanced", "KSampler (Advanced)", "sampling",
                [req("model", "MODEL"),
                 ("add_noise", [["enable", "disable"]])]
                + [(n, [s[0], {k: v for k, v in s[1].items() if k != "tooltip"}])
                   if len(s) > 1 and not isinstance(s[0], list) else (n, [s[0]])
                   for n, s in sampler_common("noise_seed")] +
                [req("positive", "CONDITIONING"),
                 req("negative", "CONDITIONING"),
                 req("latent_image", "LATENT"),
                 req("start_at_step", "INT", default=0, min=0, max=10000),
                 req("end_at_step", "INT", default=10000, min=0, max=10000),
                 ("return_with_leftover_noise", [["disable", "enable"]])],
                ["LATENT"], sampler=True),
        NodeDef("VAEDecode", "VAE Decode", "latent",
                [req("samples", "LATENT", tooltip="The latent to be decoded."),
                 req("vae", "VAE", tooltip="The VAE model used for decoding the latent.")],
                ["IMAGE"],
                description="Decodes latent images back into pixel space images.",
                output_tooltips=["The decoded image."]),
        NodeDef("VAEEncode", "VAE Encode", "latent",
                [req("pixels", "IMAGE"), req("vae", "VAE")], ["LATENT"]),
        NodeDef("LoadImage", "Load Image", "image",
                lambda emu: [("image", [emu.input_image_list(), {"image_upload": True}])],
                ["IMAGE", "MASK"], validate_inputs=("image",)),
        NodeDef("ImageScale", "Upscale Image", "image/upscaling",
                [("upscale_method", [UPSCALE_METHODS]),
                 req("width", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
                 req("height", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
                 ("crop", [["disabled", "center"]])],
                ["IMAGE"]),
        NodeDef("ImageInvert", "Invert Image", "image", [req("image", "IMAGE")], ["IMAGE"]),
        NodeDef("EmptyImage", "EmptyImage", "image",
                [req("width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
                 req("height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
                 req("batch_size", "INT", default=1, min=1, max=4096),
                 req("color", "INT", default=0, min=0, max=0xFFFFFF, step=1, display="color")],
                ["IMAGE"]),
        NodeDef("SaveImage", "Save Image", "image",
                [req("images", "IMAGE", tooltip="The images to save."),
                 req("filename_prefix", "STRING", default="ComfyUI",
                     tooltip="The prefix for the file to save. This may include formatting "
                             "information such as %date:yyyy-MM-dd% or %Empty Latent "
                             "Image.width% to include values from nodes.")],
                [], hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")],
                output_node=True,
                description="Saves the input images to your ComfyUI output directory."),
        NodeDef("PreviewImage", "Preview Image", "image",
                [req("images", "IMAGE")],
                [], hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")],
                output_node=True,
                description="Saves the input images to your ComfyUI output directory."),
        # -- media loaders and savers that are not plain PNG images (issue 8) --
        NodeDef("LoadImageMask", "Load Image (as Mask)", "mask",
                lambda emu: [("image", [emu.input_image_list(), {"image_upload": True}]),
                             ("channel", [["alpha", "red", "green", "blue"]])],
                ["MASK"], validate_inputs=("image",)),
        NodeDef("MaskToImage", "Convert Mask to Image", "mask",
                [req("mask", "MASK")], ["IMAGE"], python_module="comfy_extras.nodes_mask"),
        NodeDef("SaveAnimatedWEBP", "SaveAnimatedWEBP", "image/animation",
                [req("images", "IMAGE"),
                 req("filename_prefix", "STRING", default="ComfyUI"),
                 req("fps", "FLOAT", default=6.0, min=0.01, max=1000.0, step=0.01),
                 req("lossless", "BOOLEAN", default=True),
                 req("quality", "INT", default=80, min=0, max=100),
                 ("method", [["default", "fastest", "slowest"]])],
                [], hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")],
                output_node=True, python_module="comfy_extras.nodes_images"),
        NodeDef("SaveAnimatedPNG", "SaveAnimatedPNG", "image/animation",
                [req("images", "IMAGE"),
                 req("filename_prefix", "STRING", default="ComfyUI"),
                 req("fps", "FLOAT", default=6.0, min=0.01, max=1000.0, step=0.01),
                 req("compress_level", "INT", default=4, min=0, max=9)],
                [], hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")],
                output_node=True, python_module="comfy_extras.nodes_images"),
        NodeDef("VHS_VideoCombine", "Video Combine \U0001f3a5\U0001f145\U0001f157\U0001f162",
                "Video Helper Suite \U0001f3a5\U0001f145\U0001f157\U0001f162",
                [req("images", "IMAGE"),
                 req("frame_rate", "FLOAT", default=8, min=1, step=1),
                 req("loop_count", "INT", default=0, min=0, max=100, step=1),
                 req("filename_prefix", "STRING", default="AnimateDiff"),
                 ("format", [VHS_FORMATS]),
                 req("pingpong", "BOOLEAN", default=False),
                 req("save_output", "BOOLEAN", default=True)],
                ["VHS_FILENAMES"], output_names=["Filenames"],
                hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO"),
                        ("unique_id", "UNIQUE_ID")],
                output_node=True,
                python_module="custom_nodes.ComfyUI-VideoHelperSuite"),
        NodeDef("EmulatorSineAudio", "Sine Audio (emulator only)", "emulator",
                [req("duration", "FLOAT", default=1.0, min=0.01, max=60.0, step=0.01),
                 req("sample_rate", "INT", default=8000, min=1000, max=48000),
                 req("frequency", "FLOAT", default=440.0, min=1.0, max=20000.0)],
                ["AUDIO"], python_module="emulator",
                description="Not a ComfyUI node: a sine tone, so that SaveAudio has a source."),
        NodeDef("SaveAudio", "Save Audio (FLAC)", "audio",
                [req("audio", "AUDIO"),
                 req("filename_prefix", "STRING", default="audio/ComfyUI")],
                [], hidden=[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")],
                output_node=True, python_module="comfy_extras.nodes_audio"),
        NodeDef("PreviewAny", "Preview Any", "utils",
                [("source", ["*", {}])], [], output_node=True,
                python_module="comfy_extras.nodes_preview_any"),
    ]
    return {d.name: d for d in defs}


NODE_DEFS = build_node_defs()


# ---------------------------------------------------------------------------------------------
# Validation (mirrors ComfyUI's rules and error shapes)


def types_compatible(received, expected):
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    r = {t.strip() for t in received.split(",")}
    e = {t.strip() for t in expected.split(",")}
    if "*" in r or "*" in e:
        return True
    return bool(r & e)


def input_error(kind, message, details, name, **extra_info):
    """One entry of a node's "errors" in ComfyUI's validation answer; extra_info
    keys keep the order given, after input_name, as ComfyUI writes them."""
    return {"type": kind, "message": message, "details": details,
            "extra_info": dict({"input_name": name}, **extra_info)}


def conversion_error(name, info, val, ex):
    return input_error("invalid_input_type",
                       "Failed to convert an input value to a %s value" % info[0],
                       "%s, %s, %s" % (name, val, ex), name, input_config=info,
                       received_value=val, exception_message=str(ex))


class Validator:
    def __init__(self, emu, prompt):
        self.emu = emu
        self.prompt = prompt
        self.validated = {}

    def node_inputs(self, nid):
        return self.prompt[nid]["inputs"]

    def validate_node(self, nid):
        if nid in self.validated:
            return self.validated[nid]
        node = self.prompt[nid]
        ndef = NODE_DEFS[node["class_type"]]
        inputs = node["inputs"]
        errors = []
        valid = True
        names = [(n, s, "required") for n, s in ndef.required_inputs(self.emu)]
        names += [(n, s, "optional") for n, s in ndef.optional]
        custom = []
        for x, spec, category in names:
            input_type = spec[0]
            opts = spec[1] if len(spec) > 1 else {}
            info = [input_type, opts]
            if x not in inputs:
                if category == "required":
                    errors.append(input_error("required_input_missing",
                                              "Required input is missing", x, x))
                continue
            val = inputs[x]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(input_error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        x, x, input_config=info, received_value=val))
                    continue
                src = val[0]
                # A link to a missing node or slot raises, as in ComfyUI (caught by the caller).
                src_class = self.prompt[src]["class_type"]
                received = NODE_DEFS[src_class].outputs[val[1]]
                expected = "COMBO" if isinstance(input_type, list) else input_type
                if not types_compatible(received, expected):
                    errors.append(input_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        "%s, received_type(%s) mismatch input_type(%s)" % (x, received, expected),
                        x, input_config=info, received_type=received, linked_node=val))
                    continue
                try:
                    r = self.validate_node(src)
                    if r[0] is False:
                        valid = False
                        continue
                except Exception as ex:  # noqa: BLE001 - reported like ComfyUI does
                    valid = False
                    self.validated[src] = (False, [{
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": str(ex),
                        "extra_info": {"input_name": x, "input_config": info,
                                       "exception_message": str(ex),
                                       "exception_type": full_type_name(type(ex)),
                                       "traceback": traceback.format_tb(ex.__traceback__),
                                       "linked_node": val}}], src)
                    continue
            else:
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                        inputs[x] = val
                    if input_type == "INT":
                        val = int(val)
                        inputs[x] = val
                    elif input_type == "FLOAT":
                        val = float(val)
                        inputs[x] = val
                    elif input_type == "STRING":
                        val = str(val)
                        inputs[x] = val
                    elif input_type == "BOOLEAN":
                        val = bool(val)
                        inputs[x] = val
                except Exception as ex:  # noqa: BLE001
                    errors.append(conversion_error(x, info, val, ex))
                    continue
                if x in ndef.validate_inputs:
                    custom.append((x, val))
                    continue
                try:
                    if "min" in opts and val < opts["min"]:
                        errors.append(input_error(
                            "value_smaller_than_min",
                            "Value %s smaller than min of %s" % (val, opts["min"]),
                            x, x, input_config=info, received_value=val))
                        continue
                    if "max" in opts and val > opts["max"]:
                        errors.append(input_error(
                            "value_bigger_than_max",
                            "Value %s bigger than max of %s" % (val, opts["max"]),
                            x, x, input_config=info, received_value=val))
                        continue
                except TypeError as ex:
                    errors.append(conversion_error(x, info, val, ex))
                    continue
                if isinstance(input_type, list):
                    try:
                        present = val in input_type
                    except TypeError:
                        present = False
                    if not present:
                        config = info
                        if len(input_type) > 20:
                            list_info = "(list of length %d)" % len(input_type)
                            config = None
                        else:
                            list_info = str(input_type)
                        errors.append(input_error(
                            "value_not_in_list", "Value not in list",
                            "%s: '%s' not in %s" % (x, val, list_info),
                            x, input_config=config, received_value=val))
                        continue
        for x, val in custom:
            # LoadImage's own check: the file must exist (annotations and subfolders allowed)
            ok = isinstance(val, str) and self.emu.annotated_exists(val)
            if not ok:
                errors.append(input_error(
                    "custom_validation_failed", "Custom validation failed for node",
                    "%s - Invalid image file: %s" % (x, val), x))
        if errors or valid is not True:
            ret = (False, errors, nid)
        else:
            ret = (True, [], nid)
        self.validated[nid] = ret
        return ret


def validate_prompt(emu, prompt, partial_targets=None):
    """Returns (ok, error, outputs_to_execute, node_errors)."""
    if not isinstance(prompt, dict):
        raise TypeError("prompt must be an object")
    outputs = []
    for nid, node in prompt.items():
        if "class_type" not in node:
            return (False, {"type": "invalid_prompt",
                            "message": "Cannot execute because a node is missing the "
                                       "class_type property.",
                            "details": "Node ID '#%s'" % nid, "extra_info": {}}, [], {})
        ct = node["class_type"]
        ndef = NODE_DEFS.get(ct) if isinstance(ct, str) else None
        if ndef is None:
            return (False, {"type": "invalid_prompt",
                            "message": "Cannot execute because node %s does not exist." % ct,
                            "details": "Node ID '#%s'" % nid, "extra_info": {}}, [], {})
        if ndef.output_node and (partial_targets is None or nid in partial_targets):
            outputs.append(nid)
    if not outputs:
        return (False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                        "details": "", "extra_info": {}}, [], {})
    v = Validator(emu, prompt)
    good = []
    errors = []
    node_errors = {}
    for o in outputs:
        try:
            ok, reasons, _ = v.validate_node(o)
        except Exception as ex:  # noqa: BLE001 - reported like ComfyUI does
            ok = False
            reasons = [{"type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(ex),
                        "extra_info": {"exception_type": full_type_name(type(ex)),
                                       "traceback": traceback.format_tb(ex.__traceback__)}}]
            v.validated[o] = (False, reasons, o)
        if ok is True:
            good.append(o)
        else:
            if reasons:
                errors.append((o, reasons))
            for nid, result in v.validated.items():
                if result[0] is not True and result[1]:
                    if nid not in node_errors:
                        node_errors[nid] = {"errors": result[1], "dependent_outputs": [],
                                            "class_type": prompt[nid]["class_type"]}
                    node_errors[nid]["dependent_outputs"].append(o)
    if not good:
        lines = []
        for _, errs in errors:
            for e in errs:
                lines.append("%s: %s" % (e["message"], e["details"]))
        return (False, {"type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "\n".join(lines), "extra_info": {}}, [], node_errors)
    return (True, None, good, node_errors)


# ---------------------------------------------------------------------------------------------
# Images


def flat_image(key, w, h):
    """A smooth colour field derived from key: 2x2 seeded colours stretched over the image."""
    rnd = random.Random(key)
    small = Image.new("RGB", (2, 2))
    small.putdata([tuple(rnd.randrange(256) for _ in range(3)) for _ in range(4)])
    return small.resize((w, h), Image.BILINEAR)


_NOISE_TABLES = {}


def noise_image(key, w, h):
    """Seeded random pixels with 5 bits of entropy per channel, doubled horizontally: a
    1024x1024 PNG is about 1.5 MB, like real SDXL output, and is encoded in about 0.1 s."""
    rnd = random.Random(key)
    base = rnd.randrange(0, 224)
    table = _NOISE_TABLES.get(base)
    if table is None:
        table = bytes((i & 31) + base for i in range(256))
        _NOISE_TABLES[base] = table
    hw = max(1, (w + 1) // 2)
    data = rnd.randbytes(hw * h * 3).translate(table)
    return Image.frombytes("RGB", (hw, h), data).resize((w, h), Image.NEAREST)


def jpeg_bytes(img, quality=95):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Prompt context (faults and websocket accounting for one running prompt)


class PromptCtx:
    def __init__(self, prompt_id, client_id):
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.silence = False
        self.drop_after = None
        self.drop_abrupt = False
        self.dropped = False
        self.count = 0
        self.node_faults = []   # (fault, node_id)


class Conn:
    def __init__(self, ws, sid, transport):
        self.ws = ws
        self.sid = sid
        self.transport = transport
        self.flags = {}


# ---------------------------------------------------------------------------------------------
# The emulator


class Emulator:
    def __init__(self, args):
        self.args = args
        self.output_dir = os.path.abspath(args.output_directory or "output")
        self.input_dir = os.path.abspath(args.input_directory or "input")
        if args.temp_directory:
            self.temp_dir = os.path.join(os.path.abspath(args.temp_directory), "temp")
        else:
            self.temp_dir = os.path.abspath("temp")
        self.checkpoints = sorted(c for c in (args.checkpoints or "").split(",") if c)
        self.max_upload = int(round(args.max_upload_size * 1024 * 1024))
        self.sockets = {}            # sid -> Conn (the current one)
        self.conns = set()           # every open Conn, replaced ones included
        self.queue = []              # heap of (number, prompt_id, seq, item)
        self.seq = 0
        self.number = 0
        self.running = None          # the item being executed
        self.history = {}
        self.completed = 0
        self.cache = {}              # signature key -> {"outputs": tuple, "ui": dict or None}
        self.flags = {}              # free_memory / unload_models requests
        self.interrupt_flag = False
        self.interrupt_event = None
        self.queue_event = None
        self.hang_release = None
        self.client_id = None        # client of the current (or last) prompt
        self.last_node_id = None
        self.faults = []
        self.prompt_log = []
        self.request_log = []
        self.preview_prefixes = {}

    # -- directories and files -----------------------------------------------------------------
    def checkpoint_list(self):
        return list(self.checkpoints)

    def dir_by_type(self, t):
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}.get(t)

    def input_image_list(self):
        try:
            names = [f for f in os.listdir(self.input_dir)
                     if os.path.isfile(os.path.join(self.input_dir, f))]
        except OSError:
            return []
        out = []
        for f in names:
            mt = mimetypes.guess_type(f)[0]
            if mt and mt.split("/")[0] == "image":
                out.append(f)
        return sorted(out)

    def annotated_path(self, name, default_dir=None):
        base = default_dir or self.input_dir
        if name.endswith("[output]"):
            return name[:-9], self.output_dir
        if name.endswith("[input]"):
            return name[:-8], self.input_dir
        if name.endswith("[temp]"):
            return name[:-7], self.temp_dir
        return name, base

    def annotated_exists(self, name):
        n, d = self.annotated_path(name)
        return os.path.exists(os.path.join(d, n))

    # -- faults --------------------------------------------------------------------------------
    def arm_fault(self, f):
        if not isinstance(f, dict):
            raise ValueError("a fault is a JSON object")
        mode = f.get("mode")
        if mode not in PROMPT_FAULTS + REQUEST_FAULTS:
            raise ValueError("unknown fault mode %r" % (mode,))
        f = dict(f)
        f.setdefault("times", 1)
        if not isinstance(f["times"], int) or f["times"] == 0 or f["times"] < -1:
            raise ValueError("times must be a positive integer or -1")
        defaults = {"runtime_error": {"message": "Emulated runtime error",
                                      "exception_type": "RuntimeError"},
                    "crash": {"exit_code": 1},
                    "ws_drop": {"after": 2, "abrupt": False},
                    "slow_view": {"delay": 5},
                    "view_error": {"status": 500}}
        for k, v in defaults.get(mode, {}).items():
            f.setdefault(k, v)
        if mode == "crash" and "node" not in f and "class_type" not in f:
            f.setdefault("at_step", 1)
        self.faults.append(f)

    def consume(self, f):
        if f["times"] > 0:
            f["times"] -= 1
            if f["times"] == 0 and f in self.faults:
                self.faults.remove(f)

    def take_request_fault(self, mode):
        for f in self.faults:
            if f["mode"] == mode:
                self.consume(f)
                return f
        return None

    # -- websocket sending ---------------------------------------------------------------------
    def queue_info(self):
        return {"exec_info": {"queue_remaining": len(self.queue) + (1 if self.running else 0)}}

    async def send_conn(self, conn, event, data):
        if conn.ws.closed:
            return False
        try:
            if isinstance(data, (bytes, bytearray)):
                await conn.ws.send_bytes(bytes(data))
            else:
                await conn.ws.send_str(json.dumps({"type": event, "data": data}))
            return True
        except (ConnectionError, RuntimeError, OSError):
            return False

    async def emit(self, event, data, sid=None, ctx=None):
        """Send a JSON message (or a ready binary frame) to sid, or to every client when sid
        is None. ctx is the running prompt's context (silence and drop faults)."""
        if ctx is not None and ctx.silence:
            return
        if sid is not None:
            conn = self.sockets.get(sid)
            targets = [conn] if conn is not None else []
        else:
            targets = list(self.sockets.values())
        delivered = False
        for conn in targets:
            if await self.send_conn(conn, event, data):
                delivered = True
        if ctx is not None and delivered:
            ctx.count += 1
            if ctx.drop_after is not None and not ctx.dropped and ctx.count >= ctx.drop_after:
                ctx.dropped = True
                self.drop_all(ctx.drop_abrupt)

    def drop_all(self, abrupt):
        for conn in list(self.conns):
            if abrupt:
                try:
                    sock = conn.transport.get_extra_info("socket") if conn.transport else None
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                except OSError:
                    pass
                if conn.transport is not None:
                    conn.transport.abort()
            else:
                asyncio.ensure_future(conn.ws.close())
        self.sockets.clear()

    async def broadcast_status(self, ctx=None):
        await self.emit("status", {"status": self.queue_info()}, None, ctx)

    async def send_preview(self, ctx, node_id, img):
        sid = ctx.client_id
        jpeg = jpeg_bytes(img)
        frame1 = struct.pack(">II", 1, 1) + jpeg
        if sid is not None:
            conn = self.sockets.get(sid)
            if conn is not None and conn.flags.get("supports_preview_metadata") is True:
                meta = json.dumps({"node_id": node_id, "prompt_id": ctx.prompt_id,
                                   "display_node_id": node_id, "parent_node_id": None,
                                   "real_node_id": node_id,
                                   "image_type": "image/jpeg"}).encode()
                await self.emit("preview", struct.pack(">II", 4, len(meta)) + meta + jpeg,
                                sid, ctx)
                return
        await self.emit("preview", frame1, sid, ctx)

    # -- queue ---------------------------------------------------------------------------------
    def put(self, item):
        self.seq += 1
        heapq.heappush(self.queue, (item[0], item[1], self.seq, item))
        self.queue_event.set()

    def pending_items(self):
        return [list(e[3]) for e in self.queue]

    # -- execution planning --------------------------------------------------------------------
    def signatures(self, prompt):
        """Cache key per node: class, constant inputs and the keys of linked ancestors."""
        memo = {}

        def sig(nid, stack=()):
            if nid in memo:
                return memo[nid]
            if nid in stack or nid not in prompt:
                return "missing:%s" % nid
            node = prompt[nid]
            parts = [node["class_type"]]
            for name in sorted(node["inputs"]):
                v = node["inputs"][name]
                if is_link(v):
                    parts.append([name, "link", sig(v[0], stack + (nid,)), v[1]])
                else:
                    parts.append([name, v])
            if node["class_type"] == "LoadImage":
                parts.append(self.file_digest(node["inputs"].get("image")))
            memo[nid] = "%016x" % digest(parts)
            return memo[nid]

        return {nid: sig(nid) for nid in prompt}

    def file_digest(self, name):
        try:
            n, d = self.annotated_path(name)
            with open(os.path.join(d, n), "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except (OSError, TypeError, AttributeError):
            return uuid.uuid4().hex

    def plan(self, prompt, outputs, cached):
        """Execution order as ComfyUI's scheduler picks it (depth-first discovery from the
        outputs; among ready nodes prefer outputs, then nodes one or two hops from one)."""
        pending = {}
        block_count = {}
        blocking = {}

        def add(start):
            stack = [start]
            links = []
            while stack:
                nid = stack.pop()
                if nid in pending:
                    continue
                pending[nid] = True
                block_count[nid] = 0
                blocking[nid] = {}
                for v in prompt[nid]["inputs"].values():
                    if is_link(v):
                        if v[0] not in cached:
                            stack.append(v[0])
                        links.append((v[0], nid))
            for src, dst in links:
                if src not in cached:
                    if dst not in blocking[src]:
                        blocking[src][dst] = True
                        block_count[dst] += 1

        for o in outputs:
            add(o)

        def is_output(n):
            return NODE_DEFS[prompt[n]["class_type"]].output_node

        order = []
        while pending:
            ready = [n for n in pending if block_count[n] == 0]
            if not ready:
                break
            pick = None
            for n in ready:
                if is_output(n):
                    pick = n
                    break
            if pick is None:
                for n in ready:
                    if any(is_output(b) for b in blocking[n]):
                        pick = n
                        break
            if pick is None:
                for n in ready:
                    if any(is_output(b2) for b in blocking[n] for b2 in blocking[b]):
                        pick = n
                        break
            if pick is None:
                pick = ready[0]
            order.append(pick)
            del pending[pick]
            for d in blocking[pick]:
                block_count[d] -= 1
        return order

    def attach_faults(self, ctx, prompt, order, cached):
        executing = [n for n in order if n not in cached]
        samplers = [n for n in executing if NODE_DEFS[prompt[n]["class_type"]].sampler]
        applied = set()
        for f in list(self.faults):
            mode = f["mode"]
            if mode not in PROMPT_FAULTS:
                continue
            if mode in ("ws_silence", "ws_drop"):
                if mode in applied:
                    continue   # one fault of a kind per prompt; the next prompt gets the next
                applied.add(mode)
            if mode == "ws_silence":
                ctx.silence = True
                self.consume(f)
                continue
            if mode == "ws_drop":
                ctx.drop_after = max(0, int(f.get("after", 2)))
                ctx.drop_abrupt = bool(f.get("abrupt", False))
                self.consume(f)
                continue
            target = None
            if "node" in f:
                target = str(f["node"]) if str(f["node"]) in executing else None
            elif "class_type" in f:
                target = next((n for n in executing
                               if prompt[n]["class_type"] == f["class_type"]), None)
            else:
                target = samplers[0] if samplers else (executing[0] if executing else None)
            if target is None:
                continue
            if any(t == target for _, t in ctx.node_faults):
                continue
            ctx.node_faults.append((f, target))
            self.consume(f)

    # -- the worker ----------------------------------------------------------------------------
    async def worker(self):
        while True:
            while not self.queue:
                self.queue_event.clear()
                await self.queue_event.wait()
            _, _, _, item = heapq.heappop(self.queue)
            self.running = item
            try:
                await self.execute(item)
            except Exception:  # noqa: BLE001 - keep the worker alive whatever happens
                traceback.print_exc()
                if self.running is item:
                    self.running = None
            if self.flags.pop("free_memory", False):
                self.cache.clear()
            self.flags.pop("unload_models", None)

    async def execute(self, item):
        number, prompt_id, prompt, extra_data, outputs = item
        client_id = extra_data.get("client_id")
        ctx = PromptCtx(prompt_id, client_id)
        self.client_id = client_id
        self.last_node_id = None
        self.interrupt_flag = False
        self.interrupt_event.clear()
        prompt = copy.deepcopy(prompt)

        sigs = self.signatures(prompt)
        # classic cache: keep only the results reachable from this prompt
        keep = set(sigs.values())
        self.cache = {k: v for k, v in self.cache.items() if k in keep}
        cached = {nid for nid in prompt if sigs[nid] in self.cache}
        order = self.plan(prompt, outputs, cached)
        self.attach_faults(ctx, prompt, order, cached)

        await self.broadcast_status(ctx)   # the worker took the item

        messages = []

        async def add_message(event, data, broadcast):
            data = dict(data)
            data["timestamp"] = now_ms()
            messages.append([event, data])
            if client_id is not None or broadcast:
                await self.emit(event, data, client_id, ctx)

        await add_message("execution_start", {"prompt_id": prompt_id}, False)
        await add_message("execution_cached", {"nodes": [n for n in prompt if n in cached],
                                               "prompt_id": prompt_id}, False)
        pstate = {}

        async def send_pstate():
            await self.emit("progress_state", {"prompt_id": prompt_id,
                                               "nodes": copy.deepcopy(pstate)}, client_id, ctx)

        def pentry(nid, value, mx, state):
            return {"value": value, "max": mx, "state": state, "node_id": nid,
                    "prompt_id": prompt_id, "display_node_id": nid, "parent_node_id": None,
                    "real_node_id": nid}

        results = {}
        executed = []
        success = True
        for nid in order:
            node = prompt[nid]
            ndef = NODE_DEFS[node["class_type"]]
            if nid in cached or sigs[nid] in self.cache:
                # cached at the start (an output node), or a duplicate of a node that already
                # ran in this prompt (same signature): ComfyUI serves it from cache and sends
                # `executed` (output null when it has no UI) instead of `executing`
                entry = self.cache[sigs[nid]]
                results[nid] = entry["outputs"]
                if client_id is not None:
                    ui = entry.get("ui")
                    await self.emit("executed", {"node": nid, "display_node": nid,
                                                 "output": ui if ui else None,
                                                 "prompt_id": prompt_id}, client_id, ctx)
                old = pstate.get(nid)
                mx = old["max"] if old else 1
                pstate[nid] = pentry(nid, mx, mx, "finished")
                await send_pstate()
                continue
            pstate[nid] = pentry(nid, 0.0, 1.0, "running")
            await send_pstate()
            if client_id is not None:
                await self.emit("executing", {"node": nid, "display_node": nid,
                                              "prompt_id": prompt_id}, client_id, ctx)
                if not ctx.silence:
                    self.last_node_id = nid
            inputs = {}
            try:
                for name, v in node["inputs"].items():
                    if is_link(v):
                        src = v[0]
                        if src not in results:
                            results[src] = self.cache[sigs[src]]["outputs"]
                        inputs[name] = results[src][v[1]]
                    else:
                        inputs[name] = v
                faults = [f for f, t in ctx.node_faults if t == nid]
                await self.node_faults_at_start(faults, ndef)
                if self.interrupt_flag:
                    raise Interrupted()
                if ndef.sampler:
                    out, ui = await self.run_sampler(ctx, nid, ndef, inputs, pstate,
                                                     send_pstate, pentry, faults)
                else:
                    if self.args.node_time > 0:
                        await asyncio.sleep(self.args.node_time)
                    out, ui = await asyncio.get_running_loop().run_in_executor(
                        None, self.run_node, nid, node["class_type"], inputs, prompt,
                        extra_data)
            except Interrupted:
                await add_message("execution_interrupted", {
                    "prompt_id": prompt_id, "node_id": nid, "node_type": node["class_type"],
                    "executed": list(executed)}, True)
                success = False
                break
            except Exception as ex:  # noqa: BLE001 - a node's runtime error
                if isinstance(ex, NodeRuntimeError):
                    etype, msg, tb, tip = ex.exception_type, ex.message, ex.tb, ex.tip
                else:
                    etype, msg, tip = full_type_name(type(ex)), str(ex), ""
                    tb = traceback.format_tb(ex.__traceback__)
                if tb is None:
                    tb = fake_traceback(node["class_type"].lower())
                cur_inputs = {k: [describe_value(v)] for k, v in inputs.items()}
                for hname, _ in ndef.hidden:
                    if hname == "prompt":
                        cur_inputs["prompt"] = [str(prompt)]
                    elif hname == "extra_pnginfo":
                        ep = extra_data.get("extra_pnginfo")
                        cur_inputs["extra_pnginfo"] = [describe_value(ep) if ep is None
                                                       else str(ep)]
                await add_message("execution_error", {
                    "prompt_id": prompt_id, "node_id": nid, "node_type": node["class_type"],
                    "executed": list(executed),
                    "exception_message": "%s\n%s" % (msg, tip),
                    "exception_type": etype, "traceback": tb,
                    "current_inputs": cur_inputs,
                    "current_outputs": list(prompt.keys())}, False)
                success = False
                break
            results[nid] = out
            self.cache[sigs[nid]] = {"outputs": out, "ui": ui}
            executed.append(nid)
            if ui is not None and client_id is not None:
                await self.emit("executed", {"node": nid, "display_node": nid, "output": ui,
                                             "prompt_id": prompt_id}, client_id, ctx)
            old = pstate[nid]
            pstate[nid] = pentry(nid, old["max"], old["max"], "finished")
            await send_pstate()

        if success:
            await add_message("execution_success", {"prompt_id": prompt_id}, False)

        ui_outputs = {}
        meta = {}
        for nid in prompt:
            entry = self.cache.get(sigs[nid])
            if entry is not None and entry.get("ui"):
                ui_outputs[nid] = entry["ui"]
                meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None,
                             "real_node_id": nid}
        hist_extra = {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, item[2], hist_extra, list(outputs)],
            "outputs": ui_outputs,
            "status": {"status_str": "success" if success else "error",
                       "completed": success, "messages": messages},
            "meta": meta,
        }
        while len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        self.running = None
        self.completed += 1
        await self.broadcast_status(ctx)
        if client_id is not None:
            await self.emit("executing", {"node": None, "prompt_id": prompt_id}, client_id, ctx)
            self.last_node_id = None

    async def crash(self, code):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))

    async def node_faults_at_start(self, faults, ndef):
        for f in faults:
            mode = f["mode"]
            if mode == "hang":
                self.hang_release.clear()
                await self.hang_release.wait()
                raise Interrupted()
            if mode == "crash" and not (ndef.sampler and "at_step" in f):
                await self.crash(f.get("exit_code", 1))
            if mode == "runtime_error":
                raise NodeRuntimeError(str(f.get("message", "Emulated runtime error")),
                                       str(f.get("exception_type", "RuntimeError")))
            if mode == "oom":
                raise NodeRuntimeError(OOM_MESSAGE, "torch.OutOfMemoryError",
                                       tb=fake_traceback("sample"), tip=OOM_TIP)

    async def step_wait(self):
        """Sleep one sampler step; an interrupt cuts it short (ComfyUI checks inside the
        model call, so it takes effect within a step)."""
        if self.interrupt_flag:
            raise Interrupted()
        if self.args.step_time > 0:
            try:
                await asyncio.wait_for(self.interrupt_event.wait(), self.args.step_time)
            except asyncio.TimeoutError:
                pass
        if self.interrupt_flag:
            raise Interrupted()

    async def run_sampler(self, ctx, nid, ndef, inputs, pstate, send_pstate, pentry, faults):
        latent = inputs["latent_image"]
        steps = inputs["steps"]
        if ndef.name == "KSampler":
            total = steps
            key = digest("KSampler", inputs["model"].ckpt, inputs["seed"], steps, inputs["cfg"],
                         inputs["sampler_name"], inputs["scheduler"], inputs["denoise"],
                         inputs["positive"].key, inputs["negative"].key, latent.key)
        else:
            total = max(0, min(inputs["end_at_step"], steps) - inputs["start_at_step"])
            key = digest("KSamplerAdvanced", inputs["model"].ckpt, inputs["add_noise"],
                         inputs["noise_seed"], steps, inputs["cfg"], inputs["sampler_name"],
                         inputs["scheduler"], inputs["start_at_step"], inputs["end_at_step"],
                         inputs["return_with_leftover_noise"], inputs["positive"].key,
                         inputs["negative"].key, latent.key)
        crash_step = None
        for f in faults:
            if f["mode"] == "crash" and "at_step" in f:
                crash_step = int(f["at_step"])
        previews = self.args.preview_method != "none"
        pw, ph = latent.w * 8, latent.h * 8
        scale = min(1.0, self.args.preview_size / max(pw, ph, 1))
        psize = (max(1, int(pw * scale)), max(1, int(ph * scale)))
        for step in range(1, total + 1):
            if crash_step is not None and step >= crash_step:
                await self.crash(next(f for f in faults if f["mode"] == "crash")
                                 .get("exit_code", 1))
            await self.step_wait()
            pstate[nid] = pentry(nid, step, total, "running")
            await send_pstate()
            if previews:
                await self.send_preview(ctx, nid, flat_image(digest(key, step), *psize))
            await self.emit("progress", {"value": step, "max": total, "prompt_id": ctx.prompt_id,
                                         "node": nid}, ctx.client_id, ctx)
        if crash_step is not None and total < crash_step:
            await self.crash(next(f for f in faults if f["mode"] == "crash").get("exit_code", 1))
        return (Latent(latent.w, latent.h, latent.batch, key),), None

    # -- node implementations (run in a worker thread) -------------------------------------
    def make_images(self, key, w, h, batch):
        maker = noise_image if self.args.image_mode == "noise" else flat_image
        return [maker(digest(key, i), w, h) for i in range(batch)]

    def run_node(self, nid, class_type, inputs, prompt, extra_data):
        fn = getattr(self, "node_" + class_type)
        return fn(nid, inputs, prompt, extra_data)

    def node_CheckpointLoaderSimple(self, nid, i, prompt, extra):
        name = i["ckpt_name"]
        if name not in self.checkpoints:
            raise NodeRuntimeError("Model in folder 'checkpoints' with filename '%s' not found."
                                   % name, "FileNotFoundError")
        return (Model("MODEL", name), Model("CLIP", name), Model("VAE", name)), None

    def node_CLIPTextEncode(self, nid, i, prompt, extra):
        return (Conditioning(digest("CLIPTextEncode", i["clip"].ckpt, i["text"])),), None

    def node_CLIPTextEncodeSDXL(self, nid, i, prompt, extra):
        parts = [i[k] for k in ("width", "height", "crop_w", "crop_h", "target_width",
                                "target_height", "text_g", "text_l")]
        return (Conditioning(digest("SDXL", i["clip"].ckpt, parts)),), None

    def node_CLIPTextEncodeSDXLRefiner(self, nid, i, prompt, extra):
        parts = [i[k] for k in ("ascore", "width", "height", "text")]
        return (Conditioning(digest("SDXLRefiner", i["clip"].ckpt, parts)),), None

    def node_EmptyLatentImage(self, nid, i, prompt, extra):
        w, h, b = i["width"], i["height"], i["batch_size"]
        return (Latent(w // 8, h // 8, b, digest("empty", w // 8, h // 8, b)),), None

    def node_VAEDecode(self, nid, i, prompt, extra):
        lat = i["samples"]
        if lat.pixels is not None:
            return ([im.copy() for im in lat.pixels],), None
        return (self.make_images(digest("decode", lat.key, i["vae"].ckpt), lat.w * 8, lat.h * 8,
                                 lat.batch),), None

    def node_VAEEncode(self, nid, i, prompt, extra):
        imgs = i["pixels"]
        w, h = imgs[0].width // 8 * 8, imgs[0].height // 8 * 8
        if w == 0 or h == 0:
            raise NodeRuntimeError("Image too small to encode", "RuntimeError")
        pix = [im.crop((0, 0, w, h)) for im in imgs]
        key = digest("encode", [hashlib.sha256(p.tobytes()).hexdigest() for p in pix])
        return (Latent(w // 8, h // 8, len(pix), key, pixels=pix),), None

    def node_LoadImage(self, nid, i, prompt, extra):
        name, d = self.annotated_path(i["image"])
        path = os.path.join(d, name)
        try:
            img = Image.open(path)
        except FileNotFoundError:
            raise NodeRuntimeError("[Errno 2] No such file or directory: '%s'" % path,
                                   "FileNotFoundError")
        frames = []
        size = None
        with img:
            idx = 0
            while True:
                try:
                    img.seek(idx)
                except EOFError:
                    break
                fr = ImageOps.exif_transpose(img)
                if size is None:
                    size = fr.size
                if fr.size == size:
                    frames.append(fr.convert("RGB"))
                idx += 1
                if img.format == "MPO":
                    break
        return (frames, Mask(size[0], size[1])), None

    def node_ImageScale(self, nid, i, prompt, extra):
        imgs = i["image"]
        w, h = i["width"], i["height"]
        if w == 0 and h == 0:
            return ([im.copy() for im in imgs],), None
        ow, oh = imgs[0].size
        if w == 0:
            w = max(1, round(ow * h / oh))
        elif h == 0:
            h = max(1, round(oh * w / ow))
        method = {"nearest-exact": Image.NEAREST, "bilinear": Image.BILINEAR,
                  "area": Image.BOX, "bicubic": Image.BICUBIC,
                  "lanczos": Image.LANCZOS}[i["upscale_method"]]
        out = []
        for im in imgs:
            if i["crop"] == "center":
                old_aspect = ow / oh
                new_aspect = w / h
                x = y = 0
                cw, ch = ow, oh
                if old_aspect > new_aspect:
                    cw = round(oh * new_aspect)
                    x = (ow - cw) // 2
                elif old_aspect < new_aspect:
                    ch = round(ow / new_aspect)
                    y = (oh - ch) // 2
                im = im.crop((x, y, x + cw, y + ch))
            out.append(im.resize((w, h), method))
        return (out,), None

    def node_ImageInvert(self, nid, i, prompt, extra):
        return ([ImageOps.invert(im) for im in i["image"]],), None

    def node_EmptyImage(self, nid, i, prompt, extra):
        c = i["color"]
        rgb = ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF)
        return ([Image.new("RGB", (i["width"], i["height"]), rgb)
                 for _ in range(i["batch_size"])],), None

    def save_path(self, prefix, out_dir, w, h):
        """ComfyUI's folder_paths.get_save_image_path: (full folder, file name part, counter,
        subfolder). Raises the node error ComfyUI raises for a prefix escaping out_dir."""
        if "%" in prefix:
            lt = time.localtime()
            for k, v in (("%width%", str(w)), ("%height%", str(h)), ("%year%", str(lt.tm_year)),
                         ("%month%", str(lt.tm_mon).zfill(2)),
                         ("%day%", str(lt.tm_mday).zfill(2)),
                         ("%hour%", str(lt.tm_hour).zfill(2)),
                         ("%minute%", str(lt.tm_min).zfill(2)),
                         ("%second%", str(lt.tm_sec).zfill(2))):
                prefix = prefix.replace(k, v)
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        full = os.path.join(out_dir, subfolder)
        common = os.path.commonpath((out_dir, os.path.abspath(full)))
        if common != out_dir:
            raise NodeRuntimeError(
                "**** ERROR: Saving image outside the output folder is not allowed."
                "\n full_output_folder: " + os.path.abspath(full) +
                "\n         output_dir: " + out_dir +
                "\n         commonpath: " + common,
                "Exception",
                tb=fake_traceback("save_images", [
                    '  File "%s/folder_paths.py", line 397, in get_save_image_path\n'
                    % FAKE_ROOT]))
        counter = 1
        try:
            best = 0
            plen = len(filename)
            for f in os.listdir(full):
                if f[:plen] != filename or f[plen:plen + 1] != "_":
                    continue
                try:
                    n = int(f[plen + 1:].split("_")[0])
                except ValueError:
                    n = 0
                best = max(best, n)
            counter = best + 1
        except FileNotFoundError:
            os.makedirs(full, exist_ok=True)
        return full, filename, counter, subfolder

    def save_images(self, images, prefix, out_dir, type_, compress, prompt, extra):
        w, h = images[0].size
        full, filename, counter, subfolder = self.save_path(prefix, out_dir, w, h)
        results = []
        for bn, im in enumerate(images):
            meta = None
            if not self.args.disable_metadata:
                meta = PngInfo()
                if prompt is not None:
                    meta.add_text("prompt", json.dumps(prompt))
                if extra is not None:
                    for k in extra:
                        meta.add_text(k, json.dumps(extra[k]))
            name = "%s_%05d_.png" % (filename.replace("%batch_num%", str(bn)), counter)
            im.save(os.path.join(full, name), pnginfo=meta, compress_level=compress)
            results.append({"filename": name, "subfolder": subfolder, "type": type_})
            counter += 1
        return results

    def node_SaveImage(self, nid, i, prompt, extra):
        res = self.save_images(i["images"], i["filename_prefix"], self.output_dir, "output", 4,
                               prompt, extra.get("extra_pnginfo"))
        return (), {"images": res}

    def node_PreviewImage(self, nid, i, prompt, extra):
        sfx = self.preview_prefixes.get(nid)
        if sfx is None:
            sfx = "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz")
                                     for _ in range(5))
            self.preview_prefixes[nid] = sfx
        res = self.save_images(i["images"], "ComfyUI" + sfx, self.temp_dir, "temp", 1,
                               prompt, extra.get("extra_pnginfo"))
        return (), {"images": res}


    # -- media nodes (issue 8): loaders and savers of non-PNG outputs --------------------------
    def node_LoadImageMask(self, nid, i, prompt, extra):
        name, d = self.annotated_path(i["image"])
        path = os.path.join(d, name)
        try:
            img = Image.open(path)
        except FileNotFoundError:
            raise NodeRuntimeError("[Errno 2] No such file or directory: '%s'" % path,
                                   "FileNotFoundError")
        with img:
            img = ImageOps.exif_transpose(img)
            if img.getbands() != ("R", "G", "B", "A"):
                img = img.convert("RGBA")
            c = i["channel"][0].upper()
            band = img.getchannel(c)
            if c == "A":
                band = ImageOps.invert(band)    # ComfyUI: mask = 1 - alpha
        return (Mask(band.width, band.height, band),), None

    def node_MaskToImage(self, nid, i, prompt, extra):
        m = i["mask"]
        band = m.img if m.img is not None else Image.new("L", (m.w, m.h), 0)
        return ([Image.merge("RGB", (band, band, band))],), None

    def exif_metadata(self, img, prompt, extra):
        """The EXIF block ComfyUI's SaveAnimatedWEBP writes: 0x0110 (Model) = "prompt:<json>",
        then one tag per extra_pnginfo key counting down from 0x010f (Make)."""
        exif = img.getexif()
        if self.args.disable_metadata:
            return exif
        if prompt is not None:
            exif[0x0110] = "prompt:%s" % json.dumps(prompt)
        if extra is not None:
            tag = 0x010f
            for k in extra:
                exif[tag] = "%s:%s" % (k, json.dumps(extra[k]))
                tag -= 1
        return exif

    def node_SaveAnimatedWEBP(self, nid, i, prompt, extra):
        frames = i["images"]
        method = {"default": 4, "fastest": 0, "slowest": 6}[i["method"]]
        full, filename, counter, subfolder = self.save_path(
            i["filename_prefix"], self.output_dir, frames[0].width, frames[0].height)
        name = "%s_%05d_.webp" % (filename, counter)
        frames[0].save(os.path.join(full, name), format="WEBP", save_all=True,
                       duration=int(1000.0 / i["fps"]), append_images=frames[1:],
                       exif=self.exif_metadata(frames[0], prompt, extra.get("extra_pnginfo")),
                       lossless=bool(i["lossless"]), quality=i["quality"], method=method)
        res = [{"filename": name, "subfolder": subfolder, "type": "output"}]
        # num_frames defaults to the batch size, so a batch of one is "not animated"
        return (), {"images": res, "animated": [len(frames) != 1]}

    def node_SaveAnimatedPNG(self, nid, i, prompt, extra):
        frames = i["images"]
        full, filename, counter, subfolder = self.save_path(
            i["filename_prefix"], self.output_dir, frames[0].width, frames[0].height)
        meta = None
        if not self.args.disable_metadata:
            meta = PngInfo()
            if prompt is not None:
                meta.add(b"comf", b"prompt\0" + json.dumps(prompt).encode("latin-1"),
                         after_idat=True)
            for k, v in (extra.get("extra_pnginfo") or {}).items():
                meta.add(b"comf", k.encode("latin-1") + b"\0" + json.dumps(v).encode("latin-1"),
                         after_idat=True)
        name = "%s_%05d_.png" % (filename, counter)
        frames[0].save(os.path.join(full, name), format="PNG", pnginfo=meta,
                       compress_level=i["compress_level"], save_all=True,
                       duration=int(1000.0 / i["fps"]), append_images=frames[1:])
        res = [{"filename": name, "subfolder": subfolder, "type": "output"}]
        return (), {"images": res, "animated": [True]}

    def node_VHS_VideoCombine(self, nid, i, prompt, extra):
        frames = list(i["images"])
        save_output = bool(i["save_output"])
        out_dir = self.output_dir if save_output else self.temp_dir
        fmt = i["format"]
        full, filename, _, subfolder = self.save_path(i["filename_prefix"], out_dir, 0, 0)
        # VideoHelperSuite's own counter: <prefix>_<digits><non-digits>.<ext>
        best = 0
        for f in os.listdir(full):
            if f.lower().startswith(filename.lower() + "_"):
                rest = f[len(filename) + 1:]
                digits = ""
                while rest[:1].isdigit():
                    digits, rest = digits + rest[0], rest[1:]
                if digits and "." in rest:
                    best = max(best, int(digits))
        counter = best + 1
        first = "%s_%05d.png" % (filename, counter)
        meta = None
        if not self.args.disable_metadata:
            meta = PngInfo()
            if prompt is not None:
                meta.add_text("prompt", json.dumps(prompt))
            for k, v in (extra.get("extra_pnginfo") or {}).items():
                meta.add_text(k, json.dumps(v))
        frames[0].save(os.path.join(full, first), pnginfo=meta, compress_level=4)
        if i["pingpong"]:
            frames = frames + frames[-2:0:-1]
        ext = fmt.split("/")[1]
        name = "%s_%05d.%s" % (filename, counter, ext)
        kw = {"disposal": 2} if ext == "gif" else {"lossless": False}
        frames[0].save(os.path.join(full, name), format=ext.upper(), save_all=True,
                       append_images=frames[1:], duration=round(1000 / i["frame_rate"]),
                       loop=i["loop_count"], compress_level=4, **kw)
        files = [os.path.join(full, first), os.path.join(full, name)]
        preview = {"filename": name, "subfolder": subfolder,
                   "type": "output" if save_output else "temp", "format": fmt,
                   "frame_rate": i["frame_rate"], "workflow": first, "fullpath": files[-1]}
        return ((save_output, files),), {"gifs": [preview]}

    def node_EmulatorSineAudio(self, nid, i, prompt, extra):
        sr = i["sample_rate"]
        n = max(1, int(round(i["duration"] * sr)))
        f = i["frequency"]
        pcm = struct.pack("<%dh" % n, *(int(12000 * math.sin(2 * math.pi * f * k / sr))
                                       for k in range(n)))
        return (Audio(pcm, sr),), None

    def node_SaveAudio(self, nid, i, prompt, extra):
        audio = i["audio"]
        full, filename, counter, subfolder = self.save_path(i["filename_prefix"],
                                                            self.output_dir, 0, 0)
        # ComfyUI writes FLAC through torchaudio/PyAV; the emulator writes WAV (.wav)
        name = "%s_%05d_.wav" % (filename.replace("%batch_num%", "0"), counter)
        with wave.open(os.path.join(full, name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(audio.sample_rate)
            w.writeframes(audio.pcm)
        return (), {"audio": [{"filename": name, "subfolder": subfolder, "type": "output"}]}

    def node_PreviewAny(self, nid, i, prompt, extra):
        src = i.get("source")
        value = "None"
        if isinstance(src, str):
            value = src
        elif isinstance(src, (int, float, bool)):
            value = str(src)
        elif src is not None:
            try:
                value = json.dumps(src)
            except (TypeError, ValueError):
                value = str(describe_value(src))
        return (), {"text": [value]}


# ---------------------------------------------------------------------------------------------
# HTTP layer


def json_response(obj, status=200):
    return web.json_response(obj, status=status)


class Server:
    def __init__(self, emu):
        self.emu = emu
        a = emu.args
        self.app = web.Application(client_max_size=emu.max_upload,
                                   middlewares=[self.middleware])
        routes = [
            ("GET", "/ws", self.ws_handler),
            ("GET", "/embeddings", self.get_embeddings),
            ("GET", "/models", self.get_models),
            ("GET", "/models/{folder}", self.get_model_folder),
            ("GET", "/extensions", self.get_extensions),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/view", self.view),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/features", self.features),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_one),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_one),
            ("POST", "/history", self.post_history),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.interrupt),
            ("POST", "/free", self.free),
        ]
        for prefix in ("", "/api"):
            for method, path, handler in routes:
                if method == "GET":
                    self.app.router.add_get(prefix + path, handler)   # GET also answers HEAD
                else:
                    self.app.router.add_route(method, prefix + path, handler)
        self.app.router.add_get("/", self.index)
        self.app.router.add_post("/__emulator/fault", self.c_fault)
        self.app.router.add_post("/__emulator/reset", self.c_reset)
        self.app.router.add_get("/__emulator/prompts", self.c_prompts)
        self.app.router.add_get("/__emulator/requests", self.c_requests)
        self.app.router.add_get("/__emulator/state", self.c_state)
        self.cors = a.enable_cors_header

    # -- middleware: request log, origin check, OPTIONS --------------------------------------
    @web.middleware
    async def middleware(self, request, handler):
        if request.path.startswith("/__emulator/"):
            return await handler(request)
        rec = {"method": request.method, "path": request.path,
               "query": dict(request.rel_url.query), "body": None}
        self.emu.request_log.append(rec)
        request["emu_rec"] = rec
        ctype = request.headers.get("Content-Type", "")
        if request.method in ("POST", "PUT", "PATCH") and not ctype.startswith("multipart/"):
            raw = await request.read()      # over --max-upload-size: aiohttp answers 413
            try:
                rec["body"] = json.loads(raw) if raw else None
            except ValueError:
                pass
        if self.cors is None:
            host = request.headers.get("Host")
            origin = request.headers.get("Origin")
            if host and origin:
                origin_netloc = urlparse(origin).netloc.lower()
                host_name = urlparse("http://" + host).hostname or ""
                loopback = False
                try:
                    loopback = ipaddress.ip_address(host_name).is_loopback
                except ValueError:
                    loopback = host_name == "localhost"
                if loopback and host.lower() != origin_netloc:
                    return web.Response(status=403)
            if request.method == "OPTIONS":
                return web.Response()
            return await handler(request)
        if request.method == "OPTIONS":
            resp = web.Response()
        else:
            resp = await handler(request)
        resp.headers["Access-Control-Allow-Origin"] = self.cors
        resp.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        resp.headers["Access-Control-Allow-Credentials"] = "true"
        return resp

    # -- websocket ---------------------------------------------------------------------------
    async def ws_handler(self, request):
        emu = self.emu
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if not sid:
            sid = uuid.uuid4().hex
        conn = Conn(ws, sid, request.transport)
        # A reconnect with the same id replaces the old socket; the old one stays open but
        # gets nothing. Unlike ComfyUI, closing the old socket later does not unregister the
        # new one (see CONTROL.md, "Deviations").
        emu.sockets[sid] = conn
        emu.conns.add(conn)
        try:
            await emu.send_conn(conn, "status", {"status": emu.queue_info(), "sid": sid})
            if emu.client_id == sid and emu.last_node_id is not None:
                await emu.send_conn(conn, "executing", {"node": emu.last_node_id})
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        flags = data.get("data", {})
                        conn.flags = flags if isinstance(flags, dict) else {}
                        await emu.send_conn(conn, "feature_flags", self.feature_flags())
                    first = False
        finally:
            emu.conns.discard(conn)
            if emu.sockets.get(sid) is conn:
                del emu.sockets[sid]
        return ws

    # -- simple routes ---------------------------------------------------------------------
    def feature_flags(self):
        return {"supports_preview_metadata": True, "max_upload_size": self.emu.max_upload}

    async def index(self, request):
        return web.Response(text="<!DOCTYPE html><html><head><title>ComfyUI</title></head>"
                                 "<body>ComfyUI emulator</body></html>",
                            content_type="text/html")

    async def features(self, request):
        return json_response(self.feature_flags())

    async def get_embeddings(self, request):
        return json_response([])

    async def get_extensions(self, request):
        return json_response([])

    async def get_models(self, request):
        return json_response(list(MODEL_FOLDERS))

    async def get_model_folder(self, request):
        folder = request.match_info["folder"]
        folder = {"clip": "text_encoders", "unet": "diffusion_models"}.get(folder, folder)
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        if folder == "checkpoints":
            return json_response(self.emu.checkpoint_list())
        return json_response([])

    async def system_stats(self, request):
        total, free = meminfo()
        emu = self.emu
        return json_response({
            "system": {
                "os": os.name, "ram_total": total, "ram_free": free,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "2.8.0+cpu",
                "embedded_python": False,
                "argv": ["main.py"] + emu.args.argv,
            },
            "devices": [{"name": "cpu", "type": "cpu", "index": None,
                         "vram_total": total, "vram_free": free,
                         "torch_vram_total": total, "torch_vram_free": free}],
        })

    async def get_prompt(self, request):
        return json_response(self.emu.queue_info())

    async def object_info(self, request):
        out = {}
        for name, d in NODE_DEFS.items():
            out[name] = d.info(self.emu)
        return json_response(out)

    async def object_info_one(self, request):
        name = request.match_info["node_class"]
        d = NODE_DEFS.get(name)
        return json_response({name: d.info(self.emu)} if d else {})

    async def get_history(self, request):
        q = request.rel_url.query
        max_items = q.get("max_items")
        if max_items is not None:
            max_items = int(max_items)
        offset = q.get("offset")
        offset = int(offset) if offset is not None else -1
        hist = self.emu.history
        if offset < 0 and max_items is not None:
            offset = len(hist) - max_items
        out = {}
        for idx, k in enumerate(hist):
            if idx >= offset:
                out[k] = hist[k]
                if max_items is not None and len(out) >= max_items:
                    break
        return json_response(out)

    async def get_history_one(self, request):
        pid = request.match_info["prompt_id"]
        h = self.emu.history.get(pid)
        return json_response({pid: h} if h is not None else {})

    async def post_history(self, request):
        data = await request.json()
        if "clear" in data and data["clear"]:
            self.emu.history.clear()
        if "delete" in data:
            for pid in data["delete"]:
                self.emu.history.pop(pid, None)
        return web.Response(status=200)

    async def get_queue(self, request):
        emu = self.emu
        return json_response({
            "queue_running": [list(emu.running)] if emu.running else [],
            "queue_pending": emu.pending_items(),
        })

    async def post_queue(self, request):
        emu = self.emu
        data = await request.json()
        if "clear" in data and data["clear"]:
            emu.queue = []
            await emu.broadcast_status()
        if "delete" in data:
            for pid in data["delete"]:
                for idx, entry in enumerate(emu.queue):
                    if entry[1] == pid:
                        emu.queue.pop(idx)
                        heapq.heapify(emu.queue)
                        await emu.broadcast_status()
                        break
        return web.Response(status=200)

    async def interrupt(self, request):
        emu = self.emu
        try:
            data = await request.json()
        except ValueError:
            data = {}
        pid = data.get("prompt_id") if isinstance(data, dict) else None
        if pid:
            if emu.running is not None and emu.running[1] == pid:
                emu.interrupt_flag = True
                emu.interrupt_event.set()
        else:
            emu.interrupt_flag = True
            emu.interrupt_event.set()
        return web.Response(status=200)

    async def free(self, request):
        emu = self.emu
        data = await request.json()
        if data.get("unload_models", False):
            emu.flags["unload_models"] = True
        if data.get("free_memory", False):
            if emu.running is None:
                emu.cache.clear()
            else:
                emu.flags["free_memory"] = True
        return web.Response(status=200)

    # -- POST /prompt --------------------------------------------------------------------------
    async def post_prompt(self, request):
        emu = self.emu
        rec = {"body": None, "status": 500, "prompt_id": None}
        emu.prompt_log.append(rec)
        try:
            raw = await request.read()
            try:
                rec["body"] = json.loads(raw)
            except ValueError:
                pass
            if emu.take_request_fault("prompt_500"):
                return web.Response(status=500, text=AIOHTTP_500_TEXT)
            resp = await self.post_prompt_inner(request, rec)
            rec["status"] = resp.status
            return resp
        except web.HTTPException as ex:
            rec["status"] = ex.status
            raise

    async def post_prompt_inner(self, request, rec):
        emu = self.emu
        data = await request.json()
        if "number" in data:
            number = float(data["number"])
        else:
            number = emu.number
            if "front" in data and data["front"]:
                number = -number
            emu.number += 1
        if "prompt" not in data:
            err = {"type": "no_prompt", "message": "No prompt provided",
                   "details": "No prompt provided", "extra_info": {}}
            return json_response({"error": err, "node_errors": {}}, status=400)
        prompt = data["prompt"]
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        rec["prompt_id"] = prompt_id
        partial = data.get("partial_execution_targets")
        ok, error, outputs, node_errors = validate_prompt(emu, prompt, partial)
        extra_data = data.get("extra_data", {})
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        if not ok:
            return json_response({"error": error, "node_errors": node_errors}, status=400)
        emu.put((number, prompt_id, prompt, extra_data, outputs))
        await emu.broadcast_status()
        return json_response({"prompt_id": prompt_id, "number": number,
                              "node_errors": node_errors})

    # -- uploads -------------------------------------------------------------------------------
    async def upload_image(self, request):
        emu = self.emu
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        utype = post.get("type")
        if utype is None:
            utype = "input"
        upload_dir = emu.dir_by_type(utype)
        if upload_dir is None:
            raise RuntimeError("unknown upload type %r" % utype)  # aiohttp answers 500
        if not (image is not None and hasattr(image, "file") and image.file):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        full_folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(full_folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(full_folder, exist_ok=True)
        content = image.file.read()
        rec = request.get("emu_rec")
        if rec is not None:
            # what the uploader sent (a control-interface addition, see CONTROL.md)
            rec["form"] = {k: post.get(k) for k in ("type", "subfolder", "overwrite")
                           if isinstance(post.get(k), str)}
            rec["form"]["image"] = {"filename": image.filename, "size": len(content),
                                    "content_type": image.content_type,
                                    "sha256": hashlib.sha256(content).hexdigest()}
        stem, ext = os.path.splitext(filename)
        duplicate = False
        if not (overwrite is not None and overwrite in ("true", "1")):
            i = 1
            while os.path.exists(filepath):
                with open(filepath, "rb") as fh:
                    if hashlib.sha256(fh.read()).digest() == hashlib.sha256(content).digest():
                        duplicate = True
                        break
                filename = "%s (%d)%s" % (stem, i, ext)
                filepath = os.path.join(full_folder, filename)
                i += 1
        if not duplicate:
            with open(filepath, "wb") as fh:
                fh.write(content)
        return json_response({"name": filename, "subfolder": subfolder, "type": utype})

    # -- /view ---------------------------------------------------------------------------------
    async def view(self, request):
        emu = self.emu
        f = emu.take_request_fault("slow_view")
        if f:
            await asyncio.sleep(float(f.get("delay", 5)))
        f = emu.take_request_fault("view_error")
        if f:
            st = int(f.get("status", 500))
            if st == 500:
                return web.Response(status=500, text=AIOHTTP_500_TEXT)
            return web.Response(status=st)
        q = request.rel_url.query
        if "filename" not in q:
            return web.Response(status=404)
        filename, out_dir = q["filename"], None
        for tag, t in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
            if filename.endswith(tag):
                filename = filename[:-(len(tag) + 1)]
                out_dir = emu.dir_by_type(t)
                break
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if out_dir is None:
            out_dir = emu.dir_by_type(q.get("type", "output"))
        if out_dir is None:
            return web.Response(status=400)
        if "subfolder" in q:
            full = os.path.join(out_dir, q["subfolder"])
            if os.path.commonpath((os.path.abspath(full), out_dir)) != out_dir:
                return web.Response(status=403)
            out_dir = full
        filename = os.path.basename(filename)
        path = os.path.join(out_dir, filename)
        if not os.path.isfile(path):
            return web.Response(status=404)
        disp = {"Content-Disposition": 'filename="%s"' % filename}
        channel = q.get("channel", "rgba")
        if "preview" in q:
            with Image.open(path) as img:
                info = q["preview"].split(";")
                fmt = info[0]
                if fmt not in ("webp", "jpeg") or "a" in q.get("channel", ""):
                    fmt = "webp"
                quality = int(info[-1]) if info[-1].isdigit() else 90
                if fmt == "jpeg" or channel == "rgb":
                    img = img.convert("RGB")
                buf = io.BytesIO()
                img.save(buf, format=fmt, quality=quality)
            return web.Response(body=buf.getvalue(), content_type="image/" + fmt, headers=disp)
        if channel == "rgb":
            with Image.open(path) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="PNG")
            return web.Response(body=buf.getvalue(), content_type="image/png", headers=disp)
        if channel == "a":
            with Image.open(path) as img:
                if img.mode == "RGBA":
                    alpha = img.getchannel("A")
                else:
                    alpha = Image.new("L", img.size, 255)
                out = Image.new("RGBA", img.size, (0, 0, 0, 0))
                out.putalpha(alpha)
                buf = io.BytesIO()
                out.save(buf, format="PNG")
            return web.Response(body=buf.getvalue(), content_type="image/png", headers=disp)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if ctype in ("text/html", "text/html-sandboxed", "application/xhtml+xml",
                     "text/javascript", "text/css"):
            ctype = "application/octet-stream"
        disp["Content-Type"] = ctype
        return web.FileResponse(path, headers=disp)

    # -- control routes -----------------------------------------------------------------------
    async def c_fault(self, request):
        try:
            data = json.loads(await request.read())
            for f in (data if isinstance(data, list) else [data]):
                self.emu.arm_fault(f)
        except ValueError as ex:
            return json_response({"error": str(ex)}, status=400)
        return json_response({"armed": self.emu.faults})

    async def c_reset(self, request):
        self.emu.faults.clear()
        self.emu.hang_release.set()
        return json_response({"armed": []})

    async def c_prompts(self, request):
        return json_response(self.emu.prompt_log)

    async def c_requests(self, request):
        return json_response(self.emu.request_log)

    async def c_state(self, request):
        emu = self.emu
        pending = [e[1] for e in sorted(emu.queue, key=lambda e: (e[0], e[1], e[2]))]
        return json_response({"running": emu.running[1] if emu.running else None,
                              "pending": pending, "ws_clients": list(emu.sockets),
                              "completed": emu.completed})


def meminfo():
    total = free = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                k, v = line.split(":", 1)
                if k == "MemTotal":
                    total = int(v.split()[0]) * 1024
                elif k == "MemAvailable":
                    free = int(v.split()[0]) * 1024
    except OSError:
        pass
    return total, free


def parse_args(argv):
    p = argparse.ArgumentParser(description="ComfyUI emulator for comfy-sidecar tests")
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--output-directory")
    p.add_argument("--input-directory")
    p.add_argument("--temp-directory")
    p.add_argument("--preview-method", default="none",
                   choices=["none", "auto", "latent2rgb", "taesd"])
    p.add_argument("--preview-size", type=int, default=512)
    p.add_argument("--max-upload-size", type=float, default=100)
    p.add_argument("--disable-metadata", action="store_true")
    p.add_argument("--disable-auto-launch", action="store_true")
    p.add_argument("--disable-all-custom-nodes", action="store_true")
    p.add_argument("--dont-print-server", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--enable-cors-header", nargs="?", const="*", default=None)
    p.add_argument("--step-time", type=float, default=0.0)
    p.add_argument("--node-time", type=float, default=0.0)
    p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--checkpoints",
                   default="sd_xl_base_1.0.safetensors,sd_xl_refiner_1.0.safetensors")
    p.add_argument("--image-mode", choices=["flat", "noise"], default="flat")
    p.add_argument("--fault", action="append", default=[])
    args = p.parse_args(argv)
    args.argv = list(argv)
    return args


async def main_async(args):
    emu = Emulator(args)
    for f in args.fault:
        emu.arm_fault(json.loads(f))
    # ComfyUI wipes its temp directory at startup
    shutil.rmtree(emu.temp_dir, ignore_errors=True)
    for d in (emu.output_dir, emu.input_dir, emu.temp_dir):
        os.makedirs(d, exist_ok=True)
    if args.startup_delay > 0:
        await asyncio.sleep(args.startup_delay)
    emu.queue_event = asyncio.Event()
    emu.interrupt_event = asyncio.Event()
    emu.hang_release = asyncio.Event()
    server = Server(emu)
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    port = args.port
    addrs = [a.strip() for a in args.listen.split(",") if a.strip()] or ["0.0.0.0"]
    started = []
    for addr in addrs:
        site = web.TCPSite(runner, addr, port)
        try:
            await site.start()
        except OSError as ex:
            if addr == "::" and started:     # bare --listen on a host without IPv6
                print("not listening on [::]: %s" % ex, file=sys.stderr)
                continue
            raise
        started.append(addr)
        if port == 0:
            port = site._server.sockets[0].getsockname()[1]
    worker = asyncio.ensure_future(emu.worker())
    shown = addrs[0]
    print("emulator listening on http://%s:%d" % (shown, port), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        worker.cancel()
        await runner.cleanup()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
