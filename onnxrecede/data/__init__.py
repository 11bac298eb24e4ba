"""Sample data for calibration and evaluation: npz, image folders, CIFAR, digits."""
