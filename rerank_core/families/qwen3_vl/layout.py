"""The Qwen3-VL decoder's layout, `mrope_past_kv`: Qwen3's past-K/V layout (a shared prefix's K/V in, each row's
logit and the new tokens' K/V out) with what the VL decoder takes besides — 3-D rotary positions, and for the image
tokens among the new ones their features and DeepStack features — computed here from the ids, which carry each
image's id (media.py), and from the features of the vision encoder, run once per distinct image and kept across
calls."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from ...graph_layout import Prefix
from ..qwen3.layouts import NUMPY_TYPES, PastKvLayout
from .costs import VisionCost
from .media import ImageEntry
from .pixels import patches_of
from .positions import mrope_positions
from .settings import VLSettings
from .vision_inputs import vision_inputs

# Vision features kept across calls (features and DeepStack features, f32): about 9 screenshots' worth at the 2B
# shape (880 tokens × 4 × 2,048 × 4 bytes each).
FEATURE_CACHE_BYTES = 256 * 2**20


class ImageFeatures:
    """Each image's (grid, features, DeepStack features) by its id: least recently used ones dropped past
    `max_bytes`, never those of the call running (`pin`). Shared by the model calls' thread and the one encoding
    ahead (MropePastKvLayout.encode_ahead)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._entries: OrderedDict[int, tuple] = OrderedDict()
        self._pinned: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self.computed = 0  # images run through the vision encoder (what the cache saves is visible in tests)

    def __contains__(self, key: int) -> bool:
        return key in self._entries

    def __getitem__(self, key: int) -> tuple:
        with self._lock:
            self._entries.move_to_end(key)
            return self._entries[key]

    def pin(self, keys) -> None:
        """Keep the entries of `keys` (the running call's images) whatever the bound."""
        with self._lock:
            self._pinned = frozenset(keys)
            self._trim()

    def put(self, key: int, entry: tuple) -> None:
        """Keep `entry` for image `key`."""
        with self._lock:
            if key in self._entries:  # encoded twice at once (ahead and in a call): keep one
                return
            self._entries[key] = entry
            self.bytes += entry[1].nbytes + entry[2].nbytes
            self.computed += 1
            self._trim()

    def _trim(self) -> None:
        for key in [k for k in self._entries if k not in self._pinned]:
            if self.bytes <= self.max_bytes:
                break
            _, features, deepstack = self._entries.pop(key)
            self.bytes -= features.nbytes + deepstack.nbytes


class MropePastKvLayout(PastKvLayout):
    """Our Qwen3-VL CPU graph: past K/V of a shared prefix, 3-D positions, image and DeepStack features by index."""

    name = "mrope_past_kv"
    required = frozenset({"input_ids", "position_ids", "image_positions", "image_features", "deepstack", "last_index"})

    def __init__(
        self,
        session: ort.InferenceSession,
        yes_id: int,
        no_id: int,
        share_prefix: bool,
        settings: VLSettings,
        vision: ort.InferenceSession,
        vision_cost: VisionCost,
    ):
        super().__init__(session, yes_id, no_id, share_prefix)
        self.settings, self.vision = settings, vision  # vision: f32, int8 or bf16 as images.encoder_dtype asks
        self.vision_cost = vision_cost
        # The features enter the decoder in its own dtype (f16 for an f16 graph): cast once per call, not kept so.
        self._feature_type = next(NUMPY_TYPES[i.type] for i in session.get_inputs() if i.name == "image_features")
        self._empty = Prefix(self._empty.tensors, 0, np.zeros(0, dtype=np.int64))
        self.features = ImageFeatures(FEATURE_CACHE_BYTES)

    def take_media(self, media: Mapping[int, ImageEntry] | None) -> None:
        """Run the vision encoder on the images of `media` it has not seen and keep their features for the rows
        about to run."""
        media = media or {}
        self.features.pin(media)
        for key in media:
            if key not in self.features:
                self._encode_image(key, media)

    def media_cost(self, media: Mapping[int, ImageEntry] | None) -> int:
        """Tokens' worth of vision work the images of `media` still need: those whose features are not kept."""
        media = media or {}
        return sum(
            self.vision_cost.of_image(int(np.prod(media[key].grid))) for key in media if key not in self.features
        )

    def encode_ahead(self, media: Mapping[int, ImageEntry] | None) -> None:
        """Run the vision encoder now, one image at a time, on the images of `media` not kept yet — when their
        features fit in half the cache, so they are still there when their rows run; else the calls encode them."""
        media = media or {}
        missing = [key for key in media if key not in self.features]
        per_token = 4 * self.settings.hidden_size * (1 + self.settings.deepstack_layers)  # f32 features + DeepStack
        if not missing or sum(media[key].tokens for key in missing) * per_token > self.features.max_bytes // 2:
            return
        for key in missing:
            if key not in self.features:
                self._encode_image(key, media)

    def _encode_image(self, key: int, media: Mapping[int, ImageEntry]) -> None:
        """One image a call: the encoder's attention spans every patch of a call, unmasked (exporter 12; earlier
        exports mask it to each image's span, which one image a call satisfies too)."""
        inputs = vision_inputs([media[key].grid], self.settings.num_position_embeddings)
        features, deepstack = self.vision.run(
            None,
            {
                "pixel_values": patches_of(media[key].pixels)[0],
                "interp_indices": inputs.interp_indices,
                "interp_weights": inputs.interp_weights,
                "rotary_ids": inputs.rotary_ids,
                "cu_seqlens": inputs.cu_seqlens,
            },
        )
        self.features.put(key, (media[key].grid, features, deepstack))

    def _feed(self, input_ids: np.ndarray, last_index: np.ndarray, prefix: Prefix) -> dict:
        """Positions and image inputs of each row as the continuation of `prefix` (whose ids it keeps)."""
        rows, width = input_ids.shape
        hidden, layers = self.settings.hidden_size, self.settings.deepstack_layers
        positions = np.zeros((3, rows, width), dtype=np.int64)
        at, features, deepstack = [], [], []
        for b in range(rows):
            row = input_ids[b, : int(last_index[b]) + 1]
            whole = np.concatenate([prefix.ids, row])
            starts, index = _image_runs(whole)
            grids = [self.features[int(whole[start])][0] for start in starts]
            positions[:, b, : len(row)] = mrope_positions(
                np.where(whole < 0, self.settings.image_pad_id, whole), grids, self.settings.image_pad_id
            )[:, prefix.length :]
            for offset in np.flatnonzero(row < 0):
                _, image, stacked = self.features[int(row[offset])]
                k = index[prefix.length + offset]
                at.append(b * width + offset)
                features.append(image[k])
                deepstack.append(stacked[:, k])
        return {
            "input_ids": np.where(input_ids < 0, self.settings.image_pad_id, input_ids),
            "position_ids": positions,
            "image_positions": np.asarray(at, dtype=np.int64),
            "image_features": self._as_fed(np.stack(features) if features else np.zeros((0, hidden))),
            "deepstack": self._as_fed(np.stack(deepstack, axis=1) if deepstack else np.zeros((layers, 0, hidden))),
            "last_index": last_index,
            **dict(zip(self._past_names, prefix.tensors)),
        }

    def _as_fed(self, features: np.ndarray) -> np.ndarray:
        """`features` in the decoder's input dtype, not copied again where they are in it already (f32)."""
        return features.astype(self._feature_type, copy=False)


def _run_starts(ids: np.ndarray) -> np.ndarray:
    """Where each run of one image's tokens starts (images are ids below zero; two runs are never adjacent)."""
    image = ids < 0
    return np.flatnonzero(image & ~np.r_[False, image[:-1]])


def _image_runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(run starts, each token's index within its image's run; 0 for text)."""
    starts = _run_starts(ids)
    first = np.zeros(len(ids), dtype=np.int64)
    first[starts] = starts
    first = np.maximum.accumulate(first)
    return starts, np.where(ids < 0, np.arange(len(ids)) - first, 0)
