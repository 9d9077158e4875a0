# ESPCN (Shi et al., CVPR 2016) at its published widths, on zero-centred RGB.
model = dict(
    type='SuperResolver',
    network=dict(type='ESPCN', scale=3, in_channels=3, hidden_channels=(64, 32),
                 kernel_sizes=(5, 3, 3)),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0),
    pixel_mean=0.5,
)
