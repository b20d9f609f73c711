"""modistill: action recognition with a privileged modality distilled into an RGB-only video model.

Implements Garcia et al., "Modality Distillation with Multiple Stream Networks for Action Recognition"
(ECCV 2018) and a documented reconstruction of motion-relation distillation (Lu et al., ICONIP 2020).
"""

__version__ = "0.1.0"
