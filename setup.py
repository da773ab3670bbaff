from setuptools import setup

setup(cffi_modules=["cext/build_native.py:ffibuilder"])
