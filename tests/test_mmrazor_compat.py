"""MMRazor configs as MMRazor writes them: _base_ chains, scopes, type names, conversion and the report."""

from __future__ import annotations

import textwrap

import pytest

import jaxmutate as jm
import jaxmutate.mmrazor_compat as compat
from jaxmutate.errors import ConfigError, UnknownTypeError
from jaxmutate.registry import load_config

# Abridged copies of MMRazor's and mmcls's files, in their layout and with their keys.
MMRAZOR_FILES = {
  "mmrazor/_base_/settings/imagenet_bs1024_spos.py": """
        dataset_type = 'mmcls.ImageNet'
        preprocess_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
        train_pipeline = [
            dict(_scope_='mmcls', type='LoadImageFromFile'),
            dict(_scope_='mmcls', type='RandomResizedCrop', scale=224),
            dict(_scope_='mmcls', type='PackClsInputs'),
        ]
        test_pipeline = [dict(_scope_='mmcls', type='LoadImageFromFile'), dict(_scope_='mmcls', type='PackClsInputs')]
        train_dataloader = dict(
            batch_size=128, num_workers=4,
            dataset=dict(type=dataset_type, data_root='data/imagenet', ann_file='meta/train.txt',
                         pipeline=train_pipeline),
            sampler=dict(type='DefaultSampler', shuffle=True))
        val_dataloader = dict(
            batch_size=128, num_workers=4,
            dataset=dict(type=dataset_type, data_root='data/imagenet', ann_file='meta/val.txt', pipeline=test_pipeline),
            sampler=dict(type='DefaultSampler', shuffle=False))
        val_evaluator = dict(type='Accuracy', topk=(1, 5))
        test_dataloader = val_dataloader
        test_evaluator = val_evaluator
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9, weight_decay=4e-5), clip_grad=None)
        param_scheduler = dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=True, end=300)
        train_cfg = dict(by_epoch=True, max_epochs=300)
        val_cfg = dict()
        test_cfg = dict()
        """,
  "mmrazor/_base_/nas_backbones/spos_shufflenet_supernet.py": """
        _STAGE_MUTABLE = dict(
            _scope_='mmrazor',
            type='OneShotMutableOP',
            candidates=dict(
                shuffle_3x3=dict(type='ShuffleBlock', kernel_size=3),
                shuffle_5x5=dict(type='ShuffleBlock', kernel_size=5),
                shuffle_7x7=dict(type='ShuffleBlock', kernel_size=7),
                shuffle_xception=dict(type='ShuffleXception')))
        arch_setting = [
            [64, 4, _STAGE_MUTABLE], [160, 4, _STAGE_MUTABLE], [320, 8, _STAGE_MUTABLE], [640, 4, _STAGE_MUTABLE]]
        nas_backbone = dict(
            _scope_='mmrazor', type='SearchableShuffleNetV2', widen_factor=1.0, arch_setting=arch_setting)
        """,
  "mmcls/_base_/default_runtime.py": """
        default_scope = 'mmcls'
        default_hooks = dict(timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook', interval=100))
        env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl'))
        vis_backends = [dict(type='LocalVisBackend')]
        visualizer = dict(type='ClsVisualizer', vis_backends=vis_backends)
        log_level = 'INFO'
        load_from = None
        resume = False
        """,
  "mmrazor/_base_/settings/cifar10_darts_supernet.py": """
        preprocess_cfg = dict(mean=[125.307, 122.961, 113.8575], std=[51.5865, 50.847, 51.255], to_rgb=False)
        train_pipeline = [dict(type='mmcls.RandomCrop', crop_size=32, padding=4), dict(type='mmcls.PackClsInputs')]
        train_dataloader = dict(
            batch_size=64, dataset=dict(type='mmcls.CIFAR10', data_prefix='data/cifar10', pipeline=train_pipeline))
        val_evaluator = dict(type='mmcls.Accuracy', topk=(1, 5))
        optim_wrapper = dict(
            constructor='mmrazor.SeparateOptimWrapperConstructor',
            architecture=dict(optimizer=dict(type='mmcls.SGD', lr=0.025, momentum=0.9, weight_decay=3e-4)),
            mutator=dict(optimizer=dict(type='mmcls.Adam', lr=3e-4, weight_decay=1e-3)))
        train_cfg = dict(type='mmrazor.DartsEpochBasedTrainLoop', mutator_dataloader=train_dataloader, max_epochs=50)
        """,
  "mmrazor/_base_/nas_backbones/darts_supernet.py": """
        mutable_cfg = dict(
            type='mmrazor.DiffMutableOP',
            candidates=dict(
                zero=dict(type='mmrazor.DartsZero'),
                skip_connect=dict(type='mmrazor.DartsSkipConnect', use_drop_path=True),
                max_pool_3x3=dict(type='mmrazor.DartsPoolBN', pool_type='max', use_drop_path=True),
                avg_pool_3x3=dict(type='mmrazor.DartsPoolBN', pool_type='avg', use_drop_path=True),
                sep_conv_3x3=dict(type='mmrazor.DartsSepConv', kernel_size=3, use_drop_path=True),
                sep_conv_5x5=dict(type='mmrazor.DartsSepConv', kernel_size=5, use_drop_path=True),
                dil_conv_3x3=dict(type='mmrazor.DartsDilConv', kernel_size=3, use_drop_path=True),
                dil_conv_5x5=dict(type='mmrazor.DartsDilConv', kernel_size=5, use_drop_path=True)))
        route_cfg = dict(type='mmrazor.DiffChoiceRoute', with_arch_param=True)
        nas_backbone = dict(
            type='mmrazor.DartsBackbone', in_channels=3, base_channels=16, num_layers=8, num_nodes=4, stem_multiplier=3,
            out_indices=(7, ), mutable_cfg=mutable_cfg, route_cfg=route_cfg, norm_cfg=dict(type='BN', affine=False))
        """,
  "configs/spos/spos_shufflenet_supernet_8xb128_in1k.py": """
        _base_ = [
            'mmrazor::_base_/settings/imagenet_bs1024_spos.py',
            'mmrazor::_base_/nas_backbones/spos_shufflenet_supernet.py',
            'mmcls::_base_/default_runtime.py',
        ]
        supernet = dict(
            _scope_='mmcls',
            type='ImageClassifier',
            data_preprocessor=_base_.preprocess_cfg,
            backbone=_base_.nas_backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=1024,
                      loss=dict(type='LabelSmoothLoss', num_classes=1000, label_smooth_val=0.1, mode='original'),
                      topk=(1, 5)))
        model = dict(type='mmrazor.SPOS', architecture=supernet, mutator=dict(type='mmrazor.NasMutator'))
        find_unused_parameters = True
        """,
  "configs/spos/spos_shufflenet_search_8xb128_in1k.py": """
        _base_ = ['./spos_shufflenet_supernet_8xb128_in1k.py']
        train_cfg = dict(
            _delete_=True,
            type='mmrazor.EvolutionSearchLoop',
            dataloader=_base_.val_dataloader,
            evaluator=_base_.val_evaluator,
            max_epochs=20, num_candidates=50, top_k=10, num_mutation=25, num_crossover=25, mutate_prob=0.1,
            constraints_range=dict(flops=(0., 330.)),
            score_key='accuracy/top1')
        """,
  "configs/spos/spos_shufflenet_subnet_8xb128_in1k.py": """
        _base_ = ['./spos_shufflenet_supernet_8xb128_in1k.py']
        _base_.model = dict(
            _scope_='mmrazor',
            type='sub_model',
            cfg=_base_.supernet,
            fix_subnet='configs/nas/mmcls/spos/SPOS_SUBNET.yaml',
            init_cfg=dict(type='Pretrained', checkpoint='spos_subnet.pth', prefix='architecture.'))
        model_wrapper_cfg = None
        find_unused_parameters = False
        """,
  "configs/darts/darts_supernet_unroll_1xb96_cifar10.py": """
        _base_ = [
            'mmrazor::_base_/settings/cifar10_darts_supernet.py',
            'mmrazor::_base_/nas_backbones/darts_supernet.py',
            'mmcls::_base_/default_runtime.py',
        ]
        custom_hooks = [dict(type='mmrazor.DumpSubnetHook', interval=10, by_epoch=True)]
        model = dict(
            type='mmrazor.Darts',
            architecture=dict(
                type='ImageClassifier',
                backbone=_base_.nas_backbone,
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=10, in_channels=256,
                          loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5), cal_acc=True)),
            mutator=dict(type='mmrazor.NasMutator'),
            unroll=True)
        model_wrapper_cfg = dict(type='mmrazor.DartsDDP', broadcast_buffers=False, find_unused_parameters=False)
        find_unused_parameter = False
        """,
  "configs/darts/darts_subnet_1xb96_cifar10_2.0.py": """
        _base_ = ['./darts_supernet_unroll_1xb96_cifar10.py']
        subnet_backbone = _base_.nas_backbone
        subnet_backbone.base_channels = 36
        subnet_backbone.num_layers = 20
        subnet_backbone.auxliary = True
        subnet_backbone.out_indices = (19, )
        subnet_backbone.norm_cfg = norm_cfg = dict(type='BN', affine=True)
        supernet = dict(
            type='ImageClassifier',
            data_preprocessor=_base_.preprocess_cfg,
            backbone=subnet_backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='mmrazor.DartsSubnetClsHead', num_classes=10, in_channels=576, aux_in_channels=768,
                      loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5), cal_acc=True))
        model = dict(
            _delete_=True,
            type='mmrazor.sub_model',
            cfg=supernet,
            fix_subnet='configs/nas/mmcls/darts/DARTS_SUBNET_CIFAR_PAPER_ALIAS.yaml',
            init_cfg=dict(type='Pretrained', checkpoint='darts_subnet.pth', prefix='architecture.'))
        model_wrapper_cfg = None
        custom_hooks = []
        """,
}


@pytest.fixture
def mmrazor_tree(tmp_path):
  for name, text in MMRAZOR_FILES.items():
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  return tmp_path


def _load(tree, name):
  return load_config(tree / "configs" / name, scope_dirs={"mmrazor": tree / "mmrazor", "mmcls": tree / "mmcls"})


def test_mmrazor_type_names_and_scopes_build():
  assert compat.mmrazor_type("mmrazor.Darts") == "DARTS" and compat.mmrazor_type("mmrazor::SPOS") == "SPOS"
  assert jm.MODELS.get("mmrazor.DiffChoiceRoute") is jm.DiffChoiceRoute
  assert isinstance(jm.build(dict(_scope_="mmrazor", type="mmrazor::NasMutator")), jm.NasMutator)
  candidate = dict(type="mmrazor.ShuffleXception", in_channels=4, out_channels=4, stride=1)
  op = jm.build(dict(type="mmrazor.OneShotMutableOP", candidates=dict(a=candidate)))
  assert isinstance(op, jm.OneShotMutableOP)
  for name in compat.TYPE_MAP.values():
    assert name in jm.MODELS, name
  with pytest.raises(UnknownTypeError, match="'mmcls.ImageClassifier' has no equivalent.*classifier head"):
    jm.build(dict(_scope_="mmcls", type="mmcls.ImageClassifier"))
  with pytest.raises(UnknownTypeError, match="'mmrazor.BigNAS' is not registered"):
    jm.build(dict(type="mmrazor.BigNAS"))


def test_spos_supernet_config_loads_converts_and_builds(mmrazor_tree):
  cfg = _load(mmrazor_tree, "spos/spos_shufflenet_supernet_8xb128_in1k.py")
  assert cfg["model"]["architecture"]["backbone"]["arch_setting"][0][0] == 64
  assert cfg["model"]["architecture"]["_scope_"] == "mmcls" and cfg["default_scope"] == "mmcls"
  assert cfg["train_cfg"] == dict(by_epoch=True, max_epochs=300)
  converted, report = compat.convert_mmrazor_config(cfg)
  assert report.ok, str(report)
  architecture = converted["model"]["architecture"]
  assert architecture["type"] == "SearchableShuffleNetV2" and architecture["num_classes"] == 1000
  assert architecture["arch_setting"] == ((64, 4, 2), (160, 4, 2), (320, 8, 2), (640, 4, 2))
  assert architecture["candidate_names"] == ("shuffle_3x3", "shuffle_5x5", "shuffle_7x7", "shuffle_xception")
  assert converted["train_cfg"] == dict(epochs=300, batch_size=128)
  spos = jm.build(converted["model"])
  assert type(spos).__name__ == "SPOS" and isinstance(spos.mutator, jm.NasMutator)
  assert isinstance(spos.architecture, jm.SearchableShuffleNetV2)
  ignored = {entry.path: entry for entry in report.ignored}
  for key in (
    "train_pipeline",
    "optim_wrapper",
    "param_scheduler",
    "default_hooks",
    "val_evaluator",
    "find_unused_parameters",
    "model.architecture.neck",
    "model.architecture.head",
    "model.architecture.data_preprocessor",
    "train_cfg.by_epoch",
  ):
    assert key in ignored and ignored[key].reason, key
  assert "num_classes=1000 goes to the backbone" in ignored["model.architecture.head"].reason
  mapped = {entry.path: entry.target for entry in report.mapped}
  assert mapped["model"] == "SPOS" and mapped["model.mutator"] == "NasMutator"
  assert mapped["model.architecture.backbone"] == "SearchableShuffleNetV2"


def test_spos_search_config_maps_the_evolution_loop(mmrazor_tree):
  cfg = _load(mmrazor_tree, "spos/spos_shufflenet_search_8xb128_in1k.py")
  assert "by_epoch" not in cfg["train_cfg"] and cfg["train_cfg"]["dataloader"]["batch_size"] == 128  # _delete_
  converted, report = compat.convert_mmrazor_config(cfg)
  assert converted["search_cfg"] == dict(
    type="EvolutionSearchLoop",
    max_epochs=20,
    num_candidates=50,
    top_k=10,
    num_mutation=25,
    num_crossover=25,
    mutate_prob=0.1,
    constraints_range=dict(flops=(0.0, 330.0)),
  )
  loop = jm.build(converted["search_cfg"])
  assert isinstance(loop, jm.EvolutionSearchLoop) and loop.top_k == 10
  ignored = {entry.path for entry in report.ignored}
  assert {"train_cfg.dataloader", "train_cfg.evaluator", "train_cfg.score_key"} <= ignored and report.ok


def test_spos_subnet_config_becomes_the_supernet_and_its_subnet_file(mmrazor_tree):
  cfg = _load(mmrazor_tree, "spos/spos_shufflenet_subnet_8xb128_in1k.py")
  assert cfg["model"]["type"] == "sub_model" and cfg["model"]["cfg"]["type"] == "ImageClassifier"
  converted, report = compat.convert_mmrazor_config(cfg)
  assert converted["fix_subnet"] == "configs/nas/mmcls/spos/SPOS_SUBNET.yaml"
  assert converted["model"]["type"] == "SearchableShuffleNetV2" and converted["model"]["num_classes"] == 1000
  assert isinstance(jm.build(converted["model"]), jm.SearchableShuffleNetV2)
  assert any(e.path == "model.init_cfg" and "PyTorch" in e.reason for e in report.ignored) and report.ok


def test_darts_supernet_config_loads_converts_and_builds(mmrazor_tree):
  cfg = _load(mmrazor_tree, "darts/darts_supernet_unroll_1xb96_cifar10.py")
  converted, report = compat.convert_mmrazor_config(cfg)
  assert report.ok, str(report)
  model = converted["model"]
  assert model["type"] == "DARTS" and model["unroll"] is True
  assert model["mutator"] == dict(type="DiffModuleMutator")
  backbone = model["architecture"]
  assert backbone == dict(
    type="DartsBackbone",
    base_channels=16,
    num_layers=8,
    num_nodes=4,
    stem_multiplier=3,
    op_names=(
      "zero",
      "skip_connect",
      "max_pool_3x3",
      "avg_pool_3x3",
      "sep_conv_3x3",
      "sep_conv_5x5",
      "dil_conv_3x3",
      "dil_conv_5x5",
    ),
    route_cfg=dict(type="DiffChoiceRoute"),
    affine=False,
    num_classes=10,
  )
  darts = jm.build(model)
  assert type(darts).__name__ == "DARTS" and darts.unroll and isinstance(darts.mutator, jm.DiffModuleMutator)
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "model.architecture.backbone.in_channels" in ignored and "model.architecture.backbone.out_indices" in ignored
  assert "always have architecture logits" in ignored["model.architecture.backbone.route_cfg.with_arch_param"]
  assert {"custom_hooks", "model_wrapper_cfg", "optim_wrapper", "train_pipeline"} <= set(ignored)
  assert converted["train_cfg"] == dict(epochs=50, batch_size=64)


def test_darts_subnet_config_mutates_its_base_like_mmengine(mmrazor_tree):
  cfg = _load(mmrazor_tree, "darts/darts_subnet_1xb96_cifar10_2.0.py")
  assert cfg["nas_backbone"]["base_channels"] == 36  # the base was changed through _base_.nas_backbone
  assert cfg["norm_cfg"] == dict(type="BN", affine=True) and cfg["custom_hooks"] == []
  assert set(cfg["model"]) == {"type", "cfg", "fix_subnet", "init_cfg"}  # _delete_ dropped the algorithm keys
  converted, report = compat.convert_mmrazor_config(cfg)
  assert converted["fix_subnet"].endswith("DARTS_SUBNET_CIFAR_PAPER_ALIAS.yaml")
  backbone = converted["model"]
  assert backbone["base_channels"] == 36 and backbone["num_layers"] == 20 and backbone["affine"] is True
  assert isinstance(jm.build(backbone), jm.DartsBackbone)
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "auxiliary head" in ignored["model.cfg.backbone.auxliary"]
  assert "model.cfg.head" in ignored and report.ok


def test_unknown_keys_and_types_are_reported():
  report = compat.mmrazor_report(
    dict(
      model=dict(
        type="mmrazor.SPOS",
        architecture=dict(type="mmrazor.SearchableMobileNet"),
        mutator=dict(type="mmrazor.NasMutator"),
        norm_training=True,
      ),
      my_setting=3,
    )
  )
  assert not report.ok
  unknown = {entry.path: entry.source for entry in report.unknown}
  assert unknown == {"model.architecture": "mmrazor.SearchableMobileNet", "my_setting": "my_setting"}
  assert any(e.path == "model.norm_training" for e in report.ignored)
  text = str(report)
  assert "unknown (2):" in text and "model.architecture: mmrazor.SearchableMobileNet" in text


def test_missing_package_configs_and_base_keys_are_config_errors(mmrazor_tree):
  with pytest.raises(ConfigError, match=r"spos_shufflenet_supernet_8xb128_in1k\.py.*'mmrazor::_base_/settings"):
    load_config(mmrazor_tree / "configs/spos/spos_shufflenet_search_8xb128_in1k.py")
  bad = mmrazor_tree / "configs/spos/bad_search.py"
  bad.write_text(
    "_base_ = ['./spos_shufflenet_supernet_8xb128_in1k.py']\ntrain_cfg = dict(dataloader=_base_.val_loader)\n"
  )
  with pytest.raises(ConfigError, match=r"bad_search\.py.*_base_\.val_loader.*no key 'val_loader'.*val_dataloader"):
    _load(mmrazor_tree, "spos/bad_search.py")


# AutoSlim and slimmable networks, as MMRazor's configs write them: a 3-file _base_ chain for the subnet.
CHANNEL_FILES = {
  "mmcls/_base_/models/mobilenet_v2_1x.py": """
        model = dict(
            type='ImageClassifier',
            backbone=dict(type='MobileNetV2', widen_factor=1.0),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=1280,
                      loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5)))
        """,
  "mmrazor/_base_/settings/imagenet_bs2048_autoslim.py": """
        train_dataloader = dict(batch_size=256, dataset=dict(type='mmcls.ImageNet', data_root='data/imagenet'))
        val_dataloader = dict(batch_size=256, dataset=dict(type='mmcls.ImageNet', data_root='data/imagenet'))
        val_evaluator = dict(type='mmcls.Accuracy', topk=(1, 5))
        test_dataloader = val_dataloader
        test_evaluator = val_evaluator
        optim_wrapper = dict(optimizer=dict(type='mmcls.SGD', lr=0.8, momentum=0.9, weight_decay=1e-5))
        param_scheduler = dict(type='mmcls.PolyLR', power=1.0, eta_min=0.0, by_epoch=True, end=50)
        train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
        val_cfg = dict()
        test_cfg = dict()
        """,
  "configs/autoslim/autoslim_mbv2_1.5x_supernet_8xb256_in1k.py": """
        _base_ = [
            'mmrazor::_base_/settings/imagenet_bs2048_autoslim.py',
            'mmcls::_base_/models/mobilenet_v2_1x.py',
            'mmcls::_base_/default_runtime.py',
        ]
        supernet = _base_.model
        supernet.backbone.widen_factor = 1.5
        supernet.head.in_channels = 1920
        data_preprocessor = dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                 bgr_to_rgb=True)
        num_random_samples = 2
        model = dict(
            _delete_=True,
            _scope_='mmrazor',
            type='AutoSlim',
            num_random_samples=num_random_samples,
            architecture=supernet,
            data_preprocessor=data_preprocessor,
            distiller=dict(
                type='ConfigurableDistiller',
                teacher_recorders=dict(fc=dict(type='ModuleOutputs', source='head.fc')),
                student_recorders=dict(fc=dict(type='ModuleOutputs', source='head.fc')),
                distill_losses=dict(loss_kl=dict(type='KLDivergence', tau=1, loss_weight=1)),
                loss_forward_mappings=dict(loss_kl=dict(preds_S=dict(recorder='fc', from_student=True),
                                                        preds_T=dict(recorder='fc', from_student=False)))),
            mutator=dict(
                type='OneShotChannelMutator',
                channel_unit_cfg=dict(
                    type='OneShotMutableChannelUnit',
                    default_args=dict(candidate_choices=list(i / 12 for i in range(2, 13)), choice_mode='ratio',
                                      divisor=8)),
                parse_cfg=dict(type='ChannelAnalyzer', demo_input=(1, 3, 224, 224), tracer_type='BackwardTracer')))
        model_wrapper_cfg = dict(type='mmrazor.SubnetDDP', broadcast_buffers=False, find_unused_parameters=True)
        optim_wrapper = dict(accumulative_counts=num_random_samples + 2)
        max_epochs = 50
        param_scheduler = dict(end=max_epochs)
        train_cfg = dict(max_epochs=max_epochs)
        val_cfg = dict(type='mmrazor.SubnetValLoop', calibrate_sample_num=4096)
        """,
  "configs/autoslim/autoslim_mbv2_1.5x_search_8xb256_in1k.py": """
        _base_ = ['./autoslim_mbv2_1.5x_supernet_8xb256_in1k.py']
        model = dict(bn_training_mode=True)
        train_cfg = None
        optim_wrapper = None
        param_scheduler = None
        train_dataloader = None
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        test_cfg = dict(
            _delete_=True,
            type='mmrazor.AutoSlimGreedySearchLoop',
            dataloader=_base_.test_dataloader,
            evaluator=_base_.test_evaluator,
            target_flops=(500., 300., 200.))
        """,
  "configs/autoslim/autoslim_mbv2_1.5x_slimmable_subnet_8xb256_in1k.py": """
        _base_ = [
            'mmrazor::_base_/settings/imagenet_bs2048_autoslim.py',
            'mmcls::_base_/models/mobilenet_v2_1x.py',
            'mmcls::_base_/default_runtime.py',
        ]
        supernet = _base_.model
        supernet.backbone.widen_factor = 1.5
        supernet.head.in_channels = 1920
        model = dict(
            _delete_=True,
            _scope_='mmrazor',
            type='SlimmableNetwork',
            architecture=supernet,
            mutator=dict(
                type='SlimmableChannelMutator',
                channel_unit_cfg=dict(type='SlimmableChannelUnit', units='configs/autoslim/MBV2_slimmable.json'),
                parse_cfg=dict(type='ChannelAnalyzer', demo_input=(1, 3, 224, 224), tracer_type='BackwardTracer')))
        val_cfg = dict(type='mmrazor.SlimmableValLoop')
        """,
  "configs/autoslim/autoslim_mbv2_1.5x_subnet_8xb256_in1k_flops-530M.py": """
        _base_ = 'autoslim_mbv2_1.5x_slimmable_subnet_8xb256_in1k.py'
        model = dict(deploy_index=0)
        """,
}


@pytest.fixture
def channel_tree(mmrazor_tree):
  for name, text in CHANNEL_FILES.items():
    path = mmrazor_tree / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  return mmrazor_tree


def test_autoslim_supernet_config_maps_the_distiller_and_the_units(channel_tree):
  cfg = _load(channel_tree, "autoslim/autoslim_mbv2_1.5x_supernet_8xb256_in1k.py")
  assert cfg["model"]["architecture"]["backbone"]["widen_factor"] == 1.5  # changed through _base_.model
  converted, report = compat.convert_mmrazor_config(cfg)
  assert report.ok, str(report)
  model = converted["model"]
  assert model["type"] == "AutoSlim" and model["num_random_samples"] == 2
  architecture = model["architecture"]
  assert architecture["type"] == "SearchableMobileNetV2" and architecture["widen_factor"] == 1.5
  assert architecture["num_classes"] == 1000 and len(architecture["arch_setting"]) == 7
  assert architecture["candidate_choices"] == tuple(i / 12 for i in range(2, 13)) and architecture["divisor"] == 8
  assert model["mutator"] == dict(
    type="OneShotChannelMutator",
    channel_unit_cfg=dict(
      type="OneShotMutableChannelUnit",
      default_args=dict(candidate_choices=[i / 12 for i in range(2, 13)], choice_mode="ratio", divisor=8),
    ),
  )
  assert converted["calibrate_sample_num"] == 4096 and converted["train_cfg"] == dict(epochs=50, batch_size=256)
  mapped = {entry.path: entry for entry in report.mapped}
  assert "KL" in mapped["model.distiller"].reason and mapped["model.distiller"].target
  assert mapped["model.architecture.backbone"].target == "SearchableMobileNetV2"
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "issue #10" in ignored["model.mutator.parse_cfg"]
  assert {"model.data_preprocessor", "model_wrapper_cfg", "optim_wrapper", "param_scheduler"} <= set(ignored)
  algorithm = jm.build(model)  # the mutator accepts the unit arguments the backbone declares
  assert type(algorithm).__name__ == "AutoSlim" and algorithm.num_random_samples == 2
  assert isinstance(algorithm.mutator, jm.OneShotChannelMutator)


def test_autoslim_search_config_maps_the_greedy_loop_and_reports_bn_training_mode(channel_tree):
  cfg = _load(channel_tree, "autoslim/autoslim_mbv2_1.5x_search_8xb256_in1k.py")
  assert cfg["train_cfg"] is None and cfg["model"]["bn_training_mode"] is True
  converted, report = compat.convert_mmrazor_config(cfg)
  assert report.ok, str(report)
  assert converted["search_cfg"] == dict(
    type="AutoSlimGreedySearchLoop", target_flops=(500.0, 300.0, 200.0), relative=False
  )
  assert "calibrate_sample_num" not in converted  # the search config sets val_cfg = None
  mapped = {entry.path: entry.reason for entry in report.mapped}
  assert "224x224" in mapped["test_cfg.target_flops"]
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "recalibrated" in ignored["model.bn_training_mode"] and "no training" in ignored["train_cfg"]
  assert {"test_cfg.dataloader", "test_cfg.evaluator"} <= set(ignored)
  loop = jm.build(converted["search_cfg"])
  assert isinstance(loop, jm.AutoSlimGreedySearchLoop) and loop.target_flops == (500.0, 300.0, 200.0)


def test_slimmable_subnet_config_chain_of_three_files(channel_tree):
  cfg = _load(channel_tree, "autoslim/autoslim_mbv2_1.5x_subnet_8xb256_in1k_flops-530M.py")
  converted, report = compat.convert_mmrazor_config(cfg)
  assert report.ok, str(report)
  model = converted["model"]
  assert model["type"] == "SlimmableNetwork" and model["deploy_index"] == 0  # from the third file
  assert model["architecture"]["unit_type"] == "SlimmableChannelUnit"
  assert model["mutator"]["channel_unit_cfg"] == dict(
    type="SlimmableChannelUnit", units="configs/autoslim/MBV2_slimmable.json"
  )
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "model.mutator.parse_cfg" in ignored and "val_cfg" in ignored
  assert isinstance(jm.build(model["architecture"]), jm.SearchableMobileNetV2)


def test_a_distiller_jaxmutate_cannot_run_is_reported_not_dropped():
  model = dict(
    type="mmrazor.AutoSlim",
    architecture=dict(type="mmcls.ImageClassifier", backbone=dict(type="MobileNetV2"), head=dict(num_classes=10)),
    mutator=dict(type="OneShotChannelMutator"),
    distiller=dict(type="ConfigurableDistiller", distill_losses=dict(loss_kl=dict(type="KLDivergence", tau=4))),
    norm_training=True,
  )
  converted, report = compat.convert_mmrazor_config(dict(model=model))
  ignored = {entry.path: entry.reason for entry in report.ignored}
  assert "tau" in ignored["model.distiller"] and "distill_fn" in ignored["model.distiller"]
  assert "norm_training" not in converted["model"] and "recalibrated" in ignored["model.norm_training"]
