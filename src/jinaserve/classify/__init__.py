"""Zero-shot and few-shot classification on embedding models (`/v1/classify`, `/v1/train`, `Embedder.classify`).

`engine.ClassifyEngine` orchestrates: label sets (`labels`), the label-embedding cache (`label_cache`),
the few-shot classifier (`linear`) and the classifier store (`jinaserve.store.classifiers`).
"""

from .engine import ANONYMOUS, MAX_CLASSES, MAX_INPUTS, ClassifyEngine, ClassifyResult, TrainResult, classify_tasks
from .labels import LabelSet

__all__ = ["ANONYMOUS", "MAX_CLASSES", "MAX_INPUTS", "ClassifyEngine", "ClassifyResult", "LabelSet",
           "TrainResult", "classify_tasks"]
