"""ROS 2 messages and bags for robotics inference (needs the ``ros`` extra: rosbags).

``messages``: pure conversions between ROS 2 messages and NumPy arrays; ``bags``: reading,
synchronising and atomically writing rosbag2 files; ``live``: frame buffers of the live node;
``pipeline``: input messages -> model -> output messages, shared by ``tools/ros/bag_infer.py``
and ``tools/ros/node.py``. Import the submodules directly.
"""
