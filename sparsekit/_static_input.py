"""What the int8 weight formats (QuantizedMatrix, SparseInt8Matrix) share about
a static per-tensor u8 activation quantization: the copy with_static_input
returns and the two properties. The formats keep the values in their slots
_input_scale / _input_zero_point (None: dynamic, per row)."""


class StaticInput:
    __slots__ = ()

    def _static_copy(self, scale, zero_point):
        """A copy sharing every array, with the static input (scale, zero_point),
        or dynamic for (None, None); errors as with_static_input documents."""
        from sparsekit.quant_ops import check_static_params  # (quant_ops imports the formats)

        other = object.__new__(type(self))
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        if scale is None and zero_point is None:
            other._input_scale = other._input_zero_point = None
        elif scale is None or zero_point is None:
            raise ValueError("scale/zero_point: give both (static) or neither (dynamic)")
        else:
            other._input_scale, other._input_zero_point = check_static_params(
                scale, zero_point, "input")
        return other

    @property
    def input_scale(self):
        """The static activation scale (with_static_input), or None: dynamic."""
        return self._input_scale

    @property
    def input_zero_point(self):
        """The static activation zero point (with_static_input), or None."""
        return self._input_zero_point

    def _input_repr(self):
        return "dynamic" if self._input_scale is None else \
            f"static({self._input_scale:g}, {self._input_zero_point})"
