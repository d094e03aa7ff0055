"""Every module that registers a task, model, measure or experiment, listed by hand.

The registries (``registry.py``) fill themselves from these lists the first time they are asked
for a name, so no package ``__init__`` has to import its members for their side effects and
importing one module never drags in the whole lab. A new task, model, measure or experiment is
one line here (keep the lists sorted).
"""

from __future__ import annotations

TASKS = [
    "biaslab.tasks.anchor",
    "biaslab.tasks.boolean",
    "biaslab.tasks.images",
    "biaslab.tasks.digits",
    "biaslab.tasks.linalg",
    "biaslab.tasks.linalg_cotraining",
    "biaslab.tasks.modular",
    "biaslab.tasks.prefix_parity",
    "biaslab.tasks.table",
    "biaslab.tasks.text",
    "biaslab.tasks.vocab_features",
]

MODELS = [
    "biaslab.models.cnn",
    "biaslab.models.convmixer",
    "biaslab.models.decoder",
    "biaslab.models.gpt2",
    "biaslab.models.grokking",
    "biaslab.models.lawt",
    "biaslab.models.lstm",
    "biaslab.models.mlp",
    "biaslab.models.one_layer_attention",
    "biaslab.models.resnet",
    "biaslab.models.roberta",
    "biaslab.models.seq2seq",
    "biaslab.models.text_lstm",
    "biaslab.models.transformer",
    "biaslab.models.vision_small",
    "biaslab.models.vit",
]

MEASURES = [
    "biaslab.measure.anchor",
    "biaslab.measure.fourier",
    "biaslab.measure.landscape",
    "biaslab.measure.norms",
    "biaslab.measure.sensitivity",
    "biaslab.measure.tokenwise",
    "biaslab.measure.weight_noise",
]

EXPERIMENTS = [
    "biaslab.experiments.charton.cotraining",
    "biaslab.experiments.charton.failure_anatomy",
    "biaslab.experiments.charton.inversion_conditioning",
    "biaslab.experiments.charton.lawt_accuracy",
    "biaslab.experiments.charton.lawt_encodings",
    "biaslab.experiments.charton.ood_eigen_distributions",
    "biaslab.experiments.hahn_rofin.length_generalization",
    "biaslab.experiments.hahn_rofin.lowsens_generalization",
    "biaslab.experiments.hahn_rofin.norm_blowup_tradeoff",
    "biaslab.experiments.hahn_rofin.scratchpad",
    "biaslab.experiments.hahn_rofin.sensitivity_sharpness",
    "biaslab.experiments.hahn_rofin.sharpness_scaling",
    "biaslab.experiments.hahn_rofin.training_dynamics",
    "biaslab.experiments.hahn_rofin.training_dynamics_claims",
    "biaslab.experiments.vasudeva.architecture_sensitivity",
    "biaslab.experiments.vasudeva.grokking_sensitivity",
    "biaslab.experiments.vasudeva.sensitivity_regularization",
    "biaslab.experiments.vasudeva.sensitivity_sharpness_architectures",
    "biaslab.experiments.vasudeva.synthetic_vocabulary",
    "biaslab.experiments.vasudeva.text_sensitivity",
    "biaslab.experiments.vasudeva.vision_sensitivity",
    "biaslab.experiments.zhang_anchor.anchor_mechanisms",
    "biaslab.experiments.zhang_anchor.complexity_control",
    "biaslab.experiments.zhang_anchor.init_phase_diagram",
]

#: registry kind -> the modules that fill it (claims are registered by experiment modules).
MODULES = {"task": TASKS, "model": MODELS, "measure": MEASURES, "experiment": EXPERIMENTS,
           "claim": EXPERIMENTS}
