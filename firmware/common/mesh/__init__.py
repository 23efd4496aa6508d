"""The radio mesh both radios run: modules route (``node.MeshNode``), the concentrator is the root
(``root.MeshRoot``). Frame formats of the control traffic and the MAC: docs/mesh.md."""
