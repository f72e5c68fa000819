"""Models: split timm backbones (:mod:`~benchmark.models.backbones`: client / server at a named stage, the deployed
specs) and the one trainer every fit and optimisation goes through (:mod:`~benchmark.models.trainer`)."""
