# ODinW ("Object Detection in the Wild") zero-shot evaluation data: one table of the 35 datasets, and from it the
# test dataset and metric of each, for ODinW-13, ODinW-35 (../fiber_b_odinw13.py, ../fiber_b_odinw35.py) and the
# one-dataset configs (../single/). Protocol: one prompt per image made of the class names joined by
# ". " (or a dataset's caption prompt), COCO box AP with the original's "+1" widths per dataset, and the plain mean
# over the datasets. Facts come from GLIP's configs/odinw_35/*.yaml and configs/odinw_13/*.yaml (the original's data
# configs; FIBER ships only configs/odinw/Aquarium_Aquarium_Combined.v2-raw-1024.coco.yaml, identical to GLIP's
# odinw_35 one) and were checked against mmdet 3.3's configs/glip/odinw/*.py.
_base_ = ['../../_base_/fiber_b_zero_shot.py']

dataset_help = 'docs/datasets.md, section "Evaluation data", ODinW'
odinw_data_root = 'data/odinw/'

# One entry per dataset, in the original's order (GLIP configs/odinw_35/_all.json):
#   name:    dataset prefix in the metric keys and name of its config in ../single/.
#   folder:  under data/odinw/ (the layout of GLIP's ODinW download).
#   split:   the split the original evaluates (GLIP's DATASETS.TEST). 'val' -> valid/annotations_without_background.json
#            and images in valid/; 'minival' -> mini_val/... . In a Roboflow "export" folder (name ends in export/) the
#            images of all splits share the folder and the val annotations are val_annotations_without_background.json.
#            mmdet's configs evaluate 'valid' everywhere; we follow the original, which uses 'minival' for EgoHands and
#            VehiclesOpenImages (GLIP odinw_13 and odinw_35) and for 9 more ODinW-35 datasets (odinw_35).
#   classes: GLIP odinw_35 OVERRIDE_CATEGORY names (the original runs with DATASETS.USE_OVERRIDE_CATEGORY True), in
#            category-id order: mmdet matches these names against the annotation file's categories and numbers the
#            labels in the file's order.
#   renamed: the override names differ from the annotation file's own names. mmdet (CocoDataset, CocoMetric) looks the
#            classes up by name, so these datasets read new_annotations_without_background.json, the file with the
#            names rewritten by mmdet's configs/glip/odinw/override_category.py (run once on data/odinw/).
#   odinw13_classes: names used in ODinW-13 instead (GLIP's odinw_13 yamls; the annotation file's own
#            names, so ODinW-13 reads the unmodified annotations_without_background.json).
#   caption_prompt: keyed by class name, optional 'prefix' / 'name' (replaces the class name in the caption) /
#            'suffix' (fiber_mmdet.utils.build_class_prompt; the format of mmdet's GLIP). GLIP odinw_35 CAPTION_PROMPT
#            (Aquarium: also FIBER's yaml) verbatim, spaces included: the original runs with
#            DATASETS.USE_CAPTION_PROMPT True and does not clean the prompt texts. mmdet's
#            configs drop the leading ' ' of Aquarium's 'fish' and EgoHands' 'hand', trim Aquarium's suffixes and
#            leave Aquarium's prompt out. Only four ODinW-13 datasets have one; they keep it in ODinW-13
#            (FIBER's Aquarium yaml has it; GLIP's odinw_13 yamls have none).
__odinw_table = [
    dict(name='AerialMaritimeDrone_large', folder='AerialMaritimeDrone/large/', split='val',
         classes=('boat', 'car', 'dock', 'jetski', 'lift')),
    dict(name='AerialMaritimeDrone_tiled', folder='AerialMaritimeDrone/tiled/', split='val',
         classes=('boat', 'car', 'dock', 'jetski', 'lift')),
    dict(name='AmericanSignLanguageLetters',
         folder='AmericanSignLanguageLetters/American Sign Language Letters.v1-v1.coco/', split='val',
         classes=('A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T',
                  'U', 'V', 'W', 'X', 'Y', 'Z')),
    dict(name='Aquarium', folder='Aquarium/Aquarium Combined.v2-raw-1024.coco/', split='val',
         classes=('fish', 'jellyfish', 'penguin', 'puffin', 'shark', 'starfish', 'stingray'),
         caption_prompt={'fish': dict(prefix=' '),
                         'penguin': dict(suffix=' , which is black and white'),
                         'puffin': dict(suffix=' with orange beaks '),
                         'stingray': dict(suffix=' which is flat and round')}),
    dict(name='BCCD', folder='BCCD/BCCD.v3-raw.coco/', split='val', classes=('Platelets', 'RBC', 'WBC')),
    dict(name='ChessPieces', folder='ChessPieces/Chess Pieces.v23-raw.coco/', split='val',
         classes=('  ', 'black bishop', 'black king', 'black knight', 'black pawn', 'black queen', 'black rook',
                  'white bishop', 'white king', 'white knight', 'white pawn', 'white queen', 'white rook'),
         renamed=True),
    dict(name='CottontailRabbits', folder='CottontailRabbits/', split='val', classes=('rabbit',), renamed=True,
         odinw13_classes=('Cottontail-Rabbit',)),
    dict(name='DroneControl', folder='DroneControl/Drone Control.v3-raw.coco/', split='minival',
         classes=('follow', 'follow_hand', 'land', 'land_hand', 'null', 'object', 'takeoff', 'takeoff-hand')),
    dict(name='EgoHands_generic', folder='EgoHands/generic/', split='minival', classes=('hand',),
         caption_prompt={'hand': dict(prefix=' ', suffix=' of a person')}),
    dict(name='EgoHands_specific', folder='EgoHands/specific/', split='minival',
         classes=('myleft', 'myright', 'yourleft', 'yourright')),
    dict(name='HardHatWorkers', folder='HardHatWorkers/raw/', split='val', classes=('head', 'helmet', 'person')),
    dict(name='MaskWearing', folder='MaskWearing/raw/', split='val', classes=('mask', 'no-mask')),
    dict(name='MountainDewCommercial', folder='MountainDewCommercial/', split='val', classes=('bottle',)),
    dict(name='NorthAmericaMushrooms',
         folder='NorthAmericaMushrooms/North American Mushrooms.v1-416x416.coco/', split='val',
         classes=('flat mushroom', 'yellow mushroom'), renamed=True, odinw13_classes=('CoW', 'chanterelle')),
    dict(name='OxfordPets_by_breed', folder='OxfordPets/by-breed/', split='minival',
         classes=('cat-Abyssinian', 'cat-Bengal', 'cat-Birman', 'cat-Bombay', 'cat-British_Shorthair',
                  'cat-Egyptian_Mau', 'cat-Maine_Coon', 'cat-Persian', 'cat-Ragdoll', 'cat-Russian_Blue',
                  'cat-Siamese', 'cat-Sphynx', 'dog-american_bulldog', 'dog-american_pit_bull_terrier',
                  'dog-basset_hound', 'dog-beagle', 'dog-boxer', 'dog-chihuahua', 'dog-english_cocker_spaniel',
                  'dog-english_setter', 'dog-german_shorthaired', 'dog-great_pyrenees', 'dog-havanese',
                  'dog-japanese_chin', 'dog-keeshond', 'dog-leonberger', 'dog-miniature_pinscher',
                  'dog-newfoundland', 'dog-pomeranian', 'dog-pug', 'dog-saint_bernard', 'dog-samoyed',
                  'dog-scottish_terrier', 'dog-shiba_inu', 'dog-staffordshire_bull_terrier', 'dog-wheaten_terrier',
                  'dog-yorkshire_terrier')),
    dict(name='OxfordPets_by_species', folder='OxfordPets/by-species/', split='minival', classes=('cat', 'dog')),
    dict(name='PKLot', folder='PKLot/640/', split='minival', classes=('space-empty', 'space-occupied')),
    dict(name='Packages', folder='Packages/Raw/', split='val', classes=('package',),
         caption_prompt={'package': dict(prefix='there is a ', suffix=' on the porch')}),
    dict(name='PascalVOC', folder='PascalVOC/', split='val',
         classes=('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
                  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
                  'tvmonitor')),
    dict(name='Raccoon', folder='Raccoon/Raccoon.v2-raw.coco/', split='val', classes=('raccoon',)),
    dict(name='ShellfishOpenImages', folder='ShellfishOpenImages/raw/', split='val',
         classes=('Crab', 'Lobster', 'Shrimp')),
    dict(name='ThermalCheetah', folder='ThermalCheetah/', split='val', classes=('cheetah', 'human')),
    dict(name='UnoCards', folder='UnoCards/raw/', split='minival',
         classes=('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14')),
    dict(name='VehiclesOpenImages', folder='VehiclesOpenImages/416x416/', split='minival',
         classes=('Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck')),
    dict(name='WildfireSmoke', folder='WildfireSmoke/', split='val', classes=('smoke',)),
    dict(name='boggleBoards', folder='boggleBoards/416x416AutoOrient/export/', split='val',
         classes=('Q', 'a', 'an', 'b', 'c', 'd', 'e', 'er', 'f', 'g', 'h', 'he', 'i', 'in', 'j', 'k', 'l', 'm', 'n',
                  'o', 'o ', 'p', 'q', 'qu', 'r', 's', 't', 't\\', 'th', 'u', 'v', 'w', 'wild', 'x', 'y', 'z')),
    dict(name='brackishUnderwater', folder='brackishUnderwater/960x540/', split='minival',
         classes=('crab', 'fish', 'jellyfish', 'shrimp', 'small_fish', 'starfish')),
    dict(name='dice', folder='dice/mediumColor/export/', split='val', classes=('1', '2', '3', '4', '5', '6')),
    dict(name='openPoetryVision', folder='openPoetryVision/512x512/', split='minival',
         classes=('American Typewriter', 'Andale Mono', 'Apple Chancery', 'Arial', 'Avenir', 'Baskerville',
                  'Big Caslon', 'Bradley Hand', 'Brush Script MT', 'Chalkboard', 'Comic Sans MS', 'Copperplate',
                  'Courier', 'Didot', 'Futura', 'Geneva', 'Georgia', 'Gill Sans', 'Helvetica', 'Herculanum',
                  'Impact', 'Kefa', 'Lucida Grande', 'Luminari', 'Marker Felt', 'Menlo', 'Monaco', 'Noteworthy',
                  'Optima', 'PT Sans', 'PT Serif', 'Palatino', 'Papyrus', 'Phosphate', 'Rockwell', 'SF Pro',
                  'SignPainter', 'Skia', 'Snell Roundhand', 'Tahoma', 'Times New Roman', 'Trebuchet MS', 'Verdana')),
    dict(name='pistols', folder='pistols/export/', split='val', classes=('pistol',)),
    dict(name='plantdoc', folder='plantdoc/416x416/', split='val',
         classes=('Apple Scab Leaf', 'Apple leaf', 'Apple rust leaf', 'Bell_pepper leaf', 'Bell_pepper leaf spot',
                  'Blueberry leaf', 'Cherry leaf', 'Corn Gray leaf spot', 'Corn leaf blight', 'Corn rust leaf',
                  'Peach leaf', 'Potato leaf', 'Potato leaf early blight', 'Potato leaf late blight',
                  'Raspberry leaf', 'Soyabean leaf', 'Soybean leaf', 'Squash Powdery mildew leaf', 'Strawberry leaf',
                  'Tomato Early blight leaf', 'Tomato Septoria leaf spot', 'Tomato leaf',
                  'Tomato leaf bacterial spot', 'Tomato leaf late blight', 'Tomato leaf mosaic virus',
                  'Tomato leaf yellow virus', 'Tomato mold leaf', 'Tomato two spotted spider mites leaf',
                  'grape leaf', 'grape leaf black rot')),
    dict(name='pothole', folder='pothole/', split='val', classes=('pothole',),
         caption_prompt={'pothole': dict(prefix='there are some ', name='holes', suffix=' on the road')}),
    dict(name='selfdrivingCar', folder='selfdrivingCar/fixedLarge/export/', split='val',
         classes=('biker', 'car', 'pedestrian', 'trafficLight', 'trafficLight-Green', 'trafficLight-GreenLeft',
                  'trafficLight-Red', 'trafficLight-RedLeft', 'trafficLight-Yellow', 'trafficLight-YellowLeft',
                  'truck')),
    dict(name='thermalDogsAndPeople', folder='thermalDogsAndPeople/', split='val', classes=('dog', 'person')),
    dict(name='websiteScreenshots', folder='websiteScreenshots/', split='minival',
         classes=('button', 'field', 'heading', 'iframe', 'image', 'label', 'link', 'text')),
]

# ODinW-13 (GLIP configs/odinw_13), in table order.
__odinw13_names = ['AerialMaritimeDrone_large', 'Aquarium', 'CottontailRabbits', 'EgoHands_generic',
                 'NorthAmericaMushrooms', 'Packages', 'PascalVOC', 'Raccoon', 'ShellfishOpenImages',
                 'VehiclesOpenImages', 'pistols', 'pothole', 'thermalDogsAndPeople']
__odinw35_names = [entry['name'] for entry in __odinw_table]


def _odinw_test_set(entry, odinw13=False):
    """(test dataset dict, metric dict) of one table entry, as evaluated in ODinW-13 or ODinW-35."""
    classes = entry['classes']
    json_name = 'annotations_without_background.json'
    if odinw13 and 'odinw13_classes' in entry:
        classes = entry['odinw13_classes']
    elif entry.get('renamed', False):
        json_name = 'new_' + json_name
    data_root = odinw_data_root + entry['folder']
    if entry['folder'].endswith('export/'):
        ann_file, img_dir = f"{entry['split']}_{json_name}", ''
    else:
        img_dir = dict(val='valid/', minival='mini_val/')[entry['split']]
        ann_file = img_dir + json_name
    dataset = dict(
        type='CocoDataset',
        data_root=data_root,
        ann_file=ann_file,
        data_prefix=dict(img=img_dir),
        metainfo=dict(classes=classes),
        return_classes=True,
        test_mode=True,
        pipeline=_base_.test_pipeline)
    if 'caption_prompt' in entry:
        dataset['caption_prompt'] = entry['caption_prompt']
    return dataset, dict(type='CocoPlusOneMetric', ann_file=data_root + ann_file)


# name -> dataset / metric dict: ODinW-35 (also the one-dataset configs) and ODinW-13.
__odinw35_datasets = {entry['name']: _odinw_test_set(entry)[0] for entry in __odinw_table}
__odinw35_metrics = {entry['name']: _odinw_test_set(entry)[1] for entry in __odinw_table}
__odinw13_datasets = {entry['name']: _odinw_test_set(entry, odinw13=True)[0]
                    for entry in __odinw_table if entry['name'] in __odinw13_names}
__odinw13_metrics = {entry['name']: _odinw_test_set(entry, odinw13=True)[1]
                   for entry in __odinw_table if entry['name'] in __odinw13_names}


def _benchmark(names, datasets, metrics, average_prefix):
    """All datasets of a benchmark in one run: (ConcatDataset, evaluator with per-dataset AP and the mean)."""
    # one shared test pipeline (what DetInferencer reads); each dataset's own copy is dropped
    test_set = dict(type='SharedPipelineConcatDataset', pipeline=_base_.test_pipeline,
                    datasets=[{k: v for k, v in datasets[n].items() if k != 'pipeline'} for n in names])
    evaluator = dict(type='MultiDatasetsAverageEvaluator', metrics=[metrics[n] for n in names],
                     dataset_prefixes=list(names), average_keys=('bbox_mAP', 'bbox_mAP_50'),
                     average_prefix=average_prefix)
    return test_set, evaluator


__odinw13_test_set, __odinw13_evaluator = _benchmark(__odinw13_names, __odinw13_datasets, __odinw13_metrics, 'odinw13')
__odinw35_test_set, __odinw35_evaluator = _benchmark(__odinw35_names, __odinw35_datasets, __odinw35_metrics, 'odinw35')


# What the configs in ../ pick from, under one key. Each of them sets ``odinw = None`` once it has picked, so that
# its final config (which MMEngine prints and dumps: ~200 KB and a minute of formatting with all of this) holds
# only the datasets it runs.
odinw = dict(table=__odinw_table, odinw13_names=__odinw13_names, odinw35_names=__odinw35_names,
             odinw35_datasets=__odinw35_datasets, odinw35_metrics=__odinw35_metrics,
             odinw13_datasets=__odinw13_datasets, odinw13_metrics=__odinw13_metrics,
             odinw13_test_set=__odinw13_test_set, odinw13_evaluator=__odinw13_evaluator,
             odinw35_test_set=__odinw35_test_set, odinw35_evaluator=__odinw35_evaluator)
