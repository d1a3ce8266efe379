"""The whole params.yaml: every section, and the checks that span sections."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from synthmix.config.base import Section
from synthmix.config.classify import (
    EvaluateParams,
    MixParams,
    QCParams,
    ReportParams,
    SummarizeParams,
    TrainParams,
)
from synthmix.config.data import PrepareParams
from synthmix.config.fewshot import FewshotParams
from synthmix.config.generation import (
    GenerateParams,
    TrainGeneratorParams,
    unet_shape_problem,
)
from synthmix.config.hyponet import HyponetParams
from synthmix.config.personalize import EraseParams, TrainLoraParams, TrainTextualInversionParams
from synthmix.config.quality import FidelityParams
from synthmix.config.segmentation import (
    SegEvaluateParams,
    SegFilterParams,
    SegGenerateImagesParams,
    SegGenerateLabelsParams,
    SegMixParams,
    SegPrepareParams,
    SegSummarizeParams,
    SegTrainLabelsParams,
    SegTrainParams,
    SegTrainSpadeParams,
    seg_checks,
)
from synthmix.mixes import MixSpec


class Params(Section):
    # auto: CUDA when present, else CPU; every stage that computes reads this one param
    device: Literal["auto", "cpu", "cuda"]
    prepare: PrepareParams
    train_generator: TrainGeneratorParams
    train_lora: TrainLoraParams
    train_textual_inversion: TrainTextualInversionParams
    erase: EraseParams
    generate: GenerateParams
    mix: MixParams
    train: TrainParams
    evaluate: EvaluateParams
    fidelity: FidelityParams
    qc: QCParams
    report: ReportParams
    summarize: SummarizeParams
    hyponet: HyponetParams
    fewshot: FewshotParams
    seg_prepare: SegPrepareParams
    seg_train_labels: SegTrainLabelsParams
    seg_generate_labels: SegGenerateLabelsParams
    seg_train_spade: SegTrainSpadeParams
    seg_generate_images: SegGenerateImagesParams
    seg_filter: SegFilterParams
    seg_mix: SegMixParams
    seg_train: SegTrainParams
    seg_evaluate: SegEvaluateParams
    seg_summarize: SegSummarizeParams

    @model_validator(mode="after")
    def _seg_cross_checks(self) -> "Params":
        seg_checks(self)
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        per_class = self.mix.per_class or self.prepare.train_per_class
        specs = {n: MixSpec.parse(n) for n in self.mix.names}
        real_need = [(s.counts(per_class, self.prepare.train_per_class)[0], n)
                     for n, s in specs.items() if s.kind == "pct" or s.is_swap]
        if real_need and max(real_need)[0] > self.prepare.train_per_class:
            need, worst = max(real_need)
            raise ValueError(
                f"mix {worst} with mix.per_class = {per_class} needs {need} real images per class, but "
                f"prepare.train_per_class = {self.prepare.train_per_class}: lower mix.per_class "
                "or raise prepare.train_per_class"
            )
        fake_need = {n: s.counts(per_class, self.prepare.train_per_class)[1] for n, s in specs.items()}
        worst = max(fake_need, key=fake_need.get)
        need_fake = fake_need[worst]
        if need_fake > self.generate.per_class:
            raise ValueError(
                f"mix {worst} needs {need_fake} synthetic images per class, but generate.per_class = "
                f"{self.generate.per_class}: raise generate.per_class to at least {need_fake}"
            )
        lora_classes = {c for lo in self.generate.sd.loras for c in lo.classes}
        if lora_classes - set(self.prepare.classes):
            raise ValueError(
                f"generate.sd.loras name classes {sorted(lora_classes - set(self.prepare.classes))} that are "
                f"not in prepare.classes {self.prepare.classes}"
            )
        for key in ("class_templates", "class_names"):
            extra = sorted(set(getattr(self.generate.prompt, key)) - set(self.prepare.classes))
            if extra:
                raise ValueError(
                    f"generate.prompt.{key} names classes {extra} that are not in prepare.classes "
                    f"{self.prepare.classes}"
                )
        for test_set in self.evaluate.extra_test_sets:
            unknown = sorted(set(test_set.class_map.values()) - set(self.prepare.classes))
            if unknown:
                raise ValueError(
                    f"evaluate.extra_test_sets[{test_set.name}].class_map maps to {unknown}, which are not in "
                    f"prepare.classes {self.prepare.classes}"
                )
        if self.summarize.baseline not in self.mix.names:
            raise ValueError(
                f"summarize.baseline = {self.summarize.baseline!r} is not one of mix.names {self.mix.names}"
            )
        if max(self.fewshot.shots) > self.prepare.train_per_class:
            raise ValueError(
                f"fewshot.shots asks for {max(self.fewshot.shots)} examples per class but prepare.train_per_class "
                f"= {self.prepare.train_per_class}: lower fewshot.shots or raise prepare.train_per_class"
            )
        problem = unet_shape_problem("train_generator", self.train_generator)
        if problem:
            raise ValueError(problem)
        return self
