#!/bin/bash
exec > _scheduler-stdout.txt
exec 2> _scheduler-stderr.txt


export OMP_NUM_THREADS=1

'/root/.pyenv/versions/3.11.7/bin/python' 'gpaw_driver.py'  > 'aiida.out' 2> 'aiida.err'
