"""What images need beyond points: a classifier of the dataset's labels (trained once, cached), the metrics in its
features, and the image figures."""
