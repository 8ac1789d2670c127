"""The Modelyard API: TrainingJob and ModelDeployment as typed models, and the CRDs generated from them.

A leaf of the package: it imports no other part of Modelyard, no torch and no kopf.
"""

from modelyard.api.common import API_VERSION, GROUP, VERSION, ApiModel, Condition, ConditionStatus
from modelyard.api.model_deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from modelyard.api.training_job import TrainingJob, TrainingJobSpec, TrainingJobStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ApiModel",
    "Condition",
    "ConditionStatus",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
]
