"""ddsm: Dirichlet diffusion score models and other discrete diffusion processes.

Public API (nothing runs at import):

- ``ddsm.processes``: ``PROCESSES`` registry, ``build_process``; ``JacobiProcess`` (DDSM) and the
  alternatives behind the same ``Process`` contract;
- ``ddsm.models``: denoising backbones (``build_model``);
- ``ddsm.sampling``: the one reverse loop (``sample``) and ODE likelihoods;
- ``ddsm.special``: exact Jacobi transition law, lineage weights, stick-breaking;
- ``ddsm.api``: ``fit``, ``load_run``, ``generate``, ``score`` on plain arrays and strings.
"""

__version__ = "0.1.0"
