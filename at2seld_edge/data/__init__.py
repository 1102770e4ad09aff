"""DCASE SELD datasets: label formats, dataset specs, synthetic FOA scenes, augmentation."""
