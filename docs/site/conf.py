# Sphinx configuration of the ebpf.deploy docs site (built by `make docs` through tools/docs.sh).
# Intersphinx is off: the site must build with no network access and no warnings.
project = 'ebpf.deploy'
copyright = 'ebpf.deploy maintainers'
title = 'ebpf.deploy documentation'
html_short_title = 'ebpf.deploy'

extensions = ['sphinx.ext.autodoc', 'sphinx_antsibull_ext']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
nitpicky = True
