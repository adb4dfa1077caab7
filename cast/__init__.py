"""CAST Explorer: hierarchical superpixel segmentation with CAST (Ke, Mo, Yu, ICLR 2024)."""
