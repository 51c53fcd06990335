"""How `intent_model` trains and what a candidate must reach to be promoted."""

from pathlib import Path

from dagster import ConfigurableResource

from ai_assets.serving.intent.promotion import GateRules


class IntentModelTraining(ConfigurableResource):
    models_dir: str  # artifacts: {models_dir}/intent_model/{fingerprint}-{run}.joblib
    encoder: str = "minilm"  # minilm (production) | hashing (no neural network; smoke trainings)
    rows_per_intent: int = 0  # 0: the whole training split; N: the first N rows of each intent
    seed: int = 0
    target_precision: float = 0.98  # automated messages must be this precise on validation
    min_accuracy: float = 0.90  # the gate's floors
    min_coverage: float = 0.80
    max_out_of_scope_automated: float = 0.01
    tolerance: float = 0.0  # how much worse than production a candidate may be and still pass

    def gate_rules(self) -> GateRules:
        return GateRules(min_accuracy=self.min_accuracy, min_coverage=self.min_coverage,
                         max_out_of_scope_automated=self.max_out_of_scope_automated, tolerance=self.tolerance)

    def artifact_path(self, name: str, fingerprint: str, run_id: str) -> Path:
        return Path(self.models_dir) / name / f"{fingerprint[:16]}-{run_id[:8]}.joblib"
